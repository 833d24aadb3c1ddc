"""Candidate retrieval: the two-tower model, its ANN index over the catalogue, and recall@K."""
