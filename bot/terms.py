"""The vocabulary of ARCHITECTURE.md, defined once: categories, priorities, tiers, case statuses.

Every module that names one of these imports it from here; the screening result, the case
rules, the store's ordering and the review filters all read the same tuples.
"""

from __future__ import annotations

#: Screening categories (the fixed vocabulary of the screening result), in flow precedence order.
CATEGORIES = ("self_harm", "harm_to_others", "lethal_means", "being_harmed", "third_party_concern")
#: Case and alert priorities, lowest first; a later alert for a case may only keep or raise it.
PRIORITIES = ("routine", "urgent", "imminent")
PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
#: The screen's decision tiers.
TIERS = ("page", "ask", "none")
#: A case's statuses, in lifecycle order; the first two are "open" in the clinicians' sense.
STATUSES = ("open", "claimed", "resolved")
OPEN_STATUSES = STATUSES[:2]
