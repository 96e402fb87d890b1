"""The clinicians' web console (issue 13): one more front-end over the case rules of ``bot.cases``."""
