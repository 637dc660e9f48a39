"""zerolog.model: the ZeroLog network (encoder, heads, gradient reversal). No files, no MLflow here."""

from zerolog.model.encoder import SessionEncoder, lookup_vectors
from zerolog.model.grl import reverse_gradient
from zerolog.model.heads import AnomalyClassifier, DomainDiscriminator, ZeroLogModel

__all__ = [
    "AnomalyClassifier",
    "DomainDiscriminator",
    "SessionEncoder",
    "ZeroLogModel",
    "lookup_vectors",
    "reverse_gradient",
]
