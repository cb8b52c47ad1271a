"""Cohorts for the paper's experiments: a simulator, loaders for real data, preprocessing."""

from swarmlib.datasets.io import DataError, load_geo_series_matrix, load_matrix
from swarmlib.datasets.prep import Standardizer, align_genes, stratified_split
from swarmlib.datasets.simulate import Cohort, StudySpec, simulate_cohort

__all__ = [
    "Cohort",
    "DataError",
    "Standardizer",
    "StudySpec",
    "align_genes",
    "load_geo_series_matrix",
    "load_matrix",
    "simulate_cohort",
    "stratified_split",
]
