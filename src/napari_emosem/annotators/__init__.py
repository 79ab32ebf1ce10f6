"""Several annotators per (painting, emotion): their votes, how much they agree, their consensus.

Emotion is subjective (ArtEmis collects about five explanations per pair; APOLO's maps are soft),
so a team annotates each pair more than once and measures agreement before training on it.
The definitions are in ``docs/annotators.md``; the functions here are pure (arrays in, numbers
out) so that the numbers can be checked by hand.
"""

from .agreement import AgreementReport, PairVotes, Vote, agreement
from .consensus import consensus_map, majority_mask

__all__ = ["AgreementReport", "PairVotes", "Vote", "agreement", "consensus_map", "majority_mask"]
