"""Data-set groups for tuning vs reporting (issue 13; fixed before any further tuning).

Every default chosen from now on is chosen on :data:`TUNING` only; figures on :data:`HELD_OUT` are reported
as "held out". Defaults chosen by earlier sessions (``stack_probe="auto"``, ``start_gap_lower="auto"``,
``min_gap``, ``epochs``) were chosen looking at all ten data sets: RESULTS.md says so.
"""

from __future__ import annotations

__all__ = ["TUNING", "HELD_OUT", "group_of", "GROUP_TITLES"]

TUNING: tuple[str, ...] = ("rotten_tomatoes", "subj", "moleculenet_bace", "pku_saferlhf_safety", "peptide_amp_modlamp")
HELD_OUT: tuple[str, ...] = ("sst2", "mr", "sms_spam", "selerosa", "patent_claims_cpc", "fake_news_isot_subset",
                             "moleculenet_hiv")

GROUP_TITLES = {
    "tuning": "Tuning group (defaults may be chosen on these)",
    "held_out": "Held-out group (held out: no default is chosen on these from now on)",
}


def group_of(dataset: str) -> str:
    """``"tuning"`` or ``"held_out"``; an unknown data set is an error (every data set must be placed)."""
    if dataset in TUNING:
        return "tuning"
    if dataset in HELD_OUT:
        return "held_out"
    raise ValueError(f"data set {dataset!r} is in neither the tuning nor the held-out group (silr.bench.groups)")
