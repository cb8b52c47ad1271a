"""Load a real cohort: a samples x genes matrix (CSV/TSV, gzipped or not) or a GEO series matrix.

Both give a :class:`~swarmlib.datasets.simulate.Cohort` with binary labels, so
every example scenario runs on a user's own data with one flag. Files are
parsed with the standard library (no pandas); every refusal says what is wrong
and where.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from swarmlib.datasets.simulate import Cohort
from swarmlib.errors import ConfigurationError

__all__ = ["DataError", "load_geo_series_matrix", "load_matrix"]


class DataError(ConfigurationError):
    """A data file cannot be used; the message says which file, row or column, and why."""


def _open(path: Path) -> IO[str]:
    if not path.exists():
        raise DataError(f"No such data file: {path}")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return path.open(newline="")


def _delimiter(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    return "," if name.endswith(".csv") else "\t"


def _binary(labels: list[str], positive: str | None, where: str) -> np.ndarray:
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{where}: every sample has the label {classes[0]!r}; need two classes.")
    if positive is not None:
        if positive not in classes:
            raise DataError(f"{where}: no sample has the label {positive!r} (labels: {classes}).")
        return np.array([lab == positive for lab in labels], np.int64)
    if len(classes) > 2 or set(classes) - {"0", "1"}:
        raise DataError(
            f"{where}: labels are {classes[:6]}; name the case label with `positive=` "
            "(--positive on the command line)."
        )
    return np.array([lab == "1" for lab in labels], np.int64)


def _numbers(values: list[str], where: str, columns: list[str]) -> list[float]:
    out = []
    for value, column in zip(values, columns, strict=True):
        try:
            out.append(float(value))
        except ValueError:
            raise DataError(f"{where}, column {column!r}: {value!r} is not a number.") from None
    return out


def load_matrix(
    path: str | Path,
    *,
    labels: str | Path | None = None,
    label_column: str = "label",
    positive: str | None = None,
) -> Cohort:
    """Read a samples x genes matrix: first column sample ids, then genes (and a label column).

    Args:
        path: ``.csv``, ``.tsv`` or ``.txt`` (tab), optionally ``.gz``.
        labels: A separate two-column file (sample id, label); then the matrix
            has no label column.
        label_column: Name of the label column in the matrix. Defaults to ``"label"``.
        positive: The label of cases; the other label is controls. Not needed
            when labels are 0/1.

    Raises:
        DataError: missing file or label column, a non-numeric value, a duplicated
            sample id, a sample without a label, or labels of one class.
    """
    path = Path(path)
    with _open(path) as f:
        rows = csv.reader(f, delimiter=_delimiter(path))
        header = next(rows, None)
        if not header or len(header) < 2:
            raise DataError(f"{path}: no header row with a sample-id column and genes.")
        if labels is None and label_column not in header:
            raise DataError(
                f"{path}: no label column {label_column!r} (columns: {header[:5]}…). Name it "
                "with `label_column`, or give the labels in a separate file."
            )
        label_at = header.index(label_column) if labels is None else -1
        genes = [h for i, h in enumerate(header[1:], 1) if i != label_at]
        samples, values, raw_labels = _read_rows(rows, path, len(header), label_at, genes)
    if not samples:
        raise DataError(f"{path}: no samples.")
    if labels is not None:
        by_sample = dict(_label_file(Path(labels)))
        missing = [s for s in samples if s not in by_sample]
        if missing:
            raise DataError(f"{labels}: no label for sample(s) {missing[:5]}.")
        raw_labels = [by_sample[s] for s in samples]
    y = _binary(raw_labels, positive, str(labels or path))
    n = len(samples)
    return Cohort(np.asarray(values, np.float32), y, np.zeros(n, np.int64),
                  np.zeros(n, np.int64), genes, samples)  # fmt: skip


def _read_rows(
    rows: Iterator[list[str]], path: Path, width: int, label_at: int, genes: list[str]
) -> tuple[list[str], list[list[float]], list[str]]:
    """Sample ids, values and (when ``label_at >= 0``) labels of a matrix's rows."""
    samples: list[str] = []
    values: list[list[float]] = []
    raw_labels: list[str] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != width:
            raise DataError(f"{path}, line {n}: {len(row)} fields, the header has {width}.")
        sample = row[0]
        if sample in seen:
            raise DataError(f"{path}, line {n}: sample id {sample!r} appears twice.")
        seen.add(sample)
        samples.append(sample)
        if label_at >= 0:
            raw_labels.append(row[label_at].strip())
        cells = [v for i, v in enumerate(row[1:], 1) if i != label_at]
        values.append(_numbers(cells, f"{path}, line {n}", genes))
    return samples, values, raw_labels


def _label_file(path: Path) -> Iterator[tuple[str, str]]:
    with _open(path) as f:
        seen: set[str] = set()
        for n, row in enumerate(csv.reader(f, delimiter=_delimiter(path)), start=1):
            if not row:
                continue
            if len(row) < 2:
                raise DataError(f"{path}, line {n}: expected a sample id and a label.")
            if row[0] in seen:
                raise DataError(f"{path}, line {n}: sample id {row[0]!r} appears twice.")
            seen.add(row[0])
            yield row[0], row[1].strip()


def _read_series_matrix(
    lines: Iterable[str], path: Path, phenotype: str
) -> tuple[list[str], dict[int, str], list[str], list[list[float]]]:
    """Accessions, each sample's phenotype, probe ids and the per-probe values."""
    accessions: list[str] = []
    pheno: dict[int, str] = {}
    genes: list[str] = []
    columns: list[list[float]] = []
    in_table = False
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if line.startswith(("!series_matrix_table_begin", "!series_matrix_table_end")):
            in_table = line.startswith("!series_matrix_table_begin")
            continue
        fields = [v.strip().strip('"') for v in line.split("\t")]
        if in_table:
            if fields[0] == "ID_REF":
                continue
            if len(fields) != len(accessions) + 1:
                raise DataError(f"{path}, line {n}: {len(fields) - 1} values for "
                                f"{len(accessions)} samples.")  # fmt: skip
            genes.append(fields[0])
            columns.append(_numbers(fields[1:], f"{path}, line {n}", accessions))
        elif fields[0] == "!Sample_geo_accession":
            accessions = fields[1:]
        elif fields[0] == phenotype:
            pheno.update(enumerate(fields[1:]))
        elif fields[0] == "!Sample_characteristics_ch1":
            for i, value in enumerate(fields[1:]):
                key, _, val = value.partition(":")
                if key.strip().lower() == phenotype.lower():
                    pheno[i] = val.strip()
    return accessions, pheno, genes, columns


def load_geo_series_matrix(path: str | Path, *, phenotype: str, positive: str) -> Cohort:
    """Read a GEO series-matrix file (``GSE…_series_matrix.txt[.gz]``); labels from a phenotype.

    Args:
        phenotype: A ``!Sample_characteristics_ch1`` key (``"disease state"`` for
            values like ``"disease state: AML"``) or a whole ``!Sample_…`` field name
            (``"!Sample_source_name_ch1"``).
        positive: The phenotype value of cases (``"AML"``); all others are controls.

    Raises:
        DataError: no expression table, the phenotype is missing for a sample,
            a non-numeric value, duplicated sample ids, or one class only.
    """
    path = Path(path)
    with _open(path) as f:
        accessions, pheno, genes, columns = _read_series_matrix(f, path, phenotype)
    if not columns or not accessions:
        raise DataError(f"{path}: no expression table (is it a GEO series matrix file?).")
    if len(set(accessions)) != len(accessions):
        raise DataError(f"{path}: duplicated sample accessions.")
    missing = [accessions[i] for i in range(len(accessions)) if i not in pheno]
    if missing:
        raise DataError(f"{path}: no {phenotype!r} for sample(s) {missing[:5]}.")
    raw = [pheno[i] for i in range(len(accessions))]
    y = np.array([v == positive for v in raw], np.int64)
    if y.min() == y.max():
        raise DataError(
            f"{path}: {'every' if y.min() else 'no'} sample has {phenotype} = {positive!r} "
            f"(values: {sorted(set(raw))[:6]}); need two classes."
        )
    x = np.asarray(columns, np.float32).T.copy()
    n = len(accessions)
    return Cohort(x, y, np.zeros(n, np.int64), np.zeros(n, np.int64), genes, accessions)
