"""Hotline cards come from sourced, dated data, and a bad file fails loudly."""

from __future__ import annotations

import pytest

from bot.hotlines import HotlineConfigError, hotline_card, hotlines, load_hotlines, region_for

# ../shared/CLINICAL.md "Hotlines": the numbers each region's card must carry.
EXPECTED = {
    "US": ["988", "741741", "911", "1-800-799-7233"],
    "UK": ["116 123", "85258", "999", "0808 2000 247"],
    "IE": ["116 123", "112"],
    "CA": ["9-8-8", "911"],
    "AU": ["13 11 14", "0477 13 11 14", "000", "1800 737 732"],
    "EU": ["112"],
}


@pytest.mark.parametrize("region,numbers", EXPECTED.items())
def test_each_region_card_carries_its_numbers(region, numbers):
    card = hotline_card(region)
    for number in numbers:
        assert number in card


def test_every_region_is_dated_and_sourced():
    for region in hotlines().values():
        assert region.checked.year >= 2022 and region.source


def test_unknown_or_missing_region_falls_back_to_the_default():
    assert region_for("ZZ").code == "US"
    assert region_for(None).code == "US"
    assert region_for("gb").code == "UK"


def test_abuse_card_puts_the_domestic_abuse_line_first():
    lines = hotline_card("UK", abuse=True).splitlines()
    assert "Domestic Abuse" in lines[1]


def test_clinician_line_only_when_a_clinician_is_told():
    assert "being told" in hotline_card("US")
    assert "being told" not in hotline_card("US", clinician_told=False)


def test_bad_hotline_file_names_the_file_and_region(tmp_path):
    bad = tmp_path / "hotlines.yml"
    bad.write_text(
        "regions:\n  US:\n    label: x\n    checked: 2026-01-01\n    source: s\n"
        "    lines:\n      - {kind: crisis, name: a, number: '1', how: b}\n"
    )
    with pytest.raises(HotlineConfigError, match=r"hotlines.yml: region 'US': every region needs an emergency"):
        load_hotlines(bad)
    bad.write_text("regions:\n  US:\n    label: x\n    colour: red\n")
    with pytest.raises(HotlineConfigError, match=r"unknown keys \['colour'\]"):
        load_hotlines(bad)
