"""The cohort simulator, the loaders for real cohorts, and preprocessing without leakage."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from swarmlib.datasets import (
    DataError,
    Standardizer,
    StudySpec,
    align_genes,
    load_geo_series_matrix,
    load_matrix,
    simulate_cohort,
    stratified_split,
)
from swarmlib.errors import ConfigurationError

STUDIES = [StudySpec(30, 50, 0), StudySpec(5, 60, 1)]


def test_the_simulator_is_seeded_and_keeps_the_designed_counts() -> None:
    a = simulate_cohort(STUDIES, genes=300, seed=3)
    b = simulate_cohort(STUDIES, genes=300, seed=3)
    c = simulate_cohort(STUDIES, genes=300, seed=4)
    assert a.x.tobytes() == b.x.tobytes() and a.x.tobytes() != c.x.tobytes()
    assert a.x.shape == (145, 300) and a.x.dtype == np.float32
    for s, spec in enumerate(STUDIES):
        assert (a.y[a.study == s] == 1).sum() == spec.cases
        assert (a.y[a.study == s] == 0).sum() == spec.controls
        assert set(a.platform[a.study == s]) == {spec.platform}


def test_simulated_genes_are_correlated_in_modules_and_studies_differ() -> None:
    c = simulate_cohort([StudySpec(200, 200), StudySpec(200, 200)], genes=400, seed=0)
    corr = np.corrcoef(c.x[c.study == 0].T)
    off = np.abs(corr[np.triu_indices(400, 1)])
    assert (off > 0.3).mean() > 0.01, "no co-expressed gene blocks"
    gap = np.abs(c.x[c.study == 0].mean(0) - c.x[c.study == 1].mean(0))
    assert np.median(gap) > 0.05, "no batch effect between studies"


def test_the_signature_separates_classes_only_in_a_minority_of_genes() -> None:
    c = simulate_cohort([StudySpec(400, 400)], genes=500, seed=1)
    diff = c.x[c.y == 1].mean(0) - c.x[c.y == 0].mean(0)
    pooled = c.x.std(0)
    strong = np.abs(diff / pooled) > 0.3
    assert 0 < strong.mean() < 0.1


def test_bad_designs_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least one study"):
        simulate_cohort([])
    with pytest.raises(ConfigurationError, match="platform 2"):
        simulate_cohort([StudySpec(1, 1, platform=2)])


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_a_matrix_with_a_label_column_loads_from_csv_and_gzipped_tsv(tmp_path: Path) -> None:
    text = "id,GENE1,label,GENE2\ns1,1.5,AML,2\ns2,0.5,ctrl,3\ns3,1,AML,4\n"
    c = load_matrix(_write(tmp_path / "m.csv", text), positive="AML")
    assert c.genes == ["GENE1", "GENE2"] and c.samples == ["s1", "s2", "s3"]
    np.testing.assert_array_equal(c.y, [1, 0, 1])
    np.testing.assert_array_equal(c.x, [[1.5, 2], [0.5, 3], [1, 4]])
    gz = _write(tmp_path / "m.tsv.gz", text.replace(",", "\t"))
    assert load_matrix(gz, positive="AML").x.tobytes() == c.x.tobytes()


def test_labels_can_come_from_a_separate_file(tmp_path: Path) -> None:
    m = _write(tmp_path / "m.tsv", "id\tA\tB\nx\t1\t2\ny\t3\t4\n")
    lab = _write(tmp_path / "labels.tsv", "y\t0\nx\t1\n")
    np.testing.assert_array_equal(load_matrix(m, labels=lab).y, [1, 0])


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("id,A,B\ns1,1,2\n", {}, "no label column 'label'"),
        ("id,A,label\ns1,1,0\ns2,oops,1\n", {}, r"line 3, column 'A': 'oops' is not a number"),
        ("id,A,label\ns1,1,0\ns1,2,1\n", {}, "'s1' appears twice"),
        ("id,A,label\ns1,1,AML\ns2,2,AML\n", {}, "need two classes"),
        ("id,A,label\ns1,1,AML\ns2,2,ctrl\n", {}, "name the case label with `positive=`"),
        ("id,A,label\ns1,1,0\ns2,2\n", {}, "line 3: 2 fields, the header has 3"),
    ],
)
def test_bad_matrices_are_refused_with_what_and_where(
    tmp_path: Path, text: str, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        load_matrix(_write(tmp_path / "m.csv", text), **kwargs)


def test_a_missing_label_in_the_label_file_is_named(tmp_path: Path) -> None:
    m = _write(tmp_path / "m.tsv", "id\tA\nx\t1\ny\t3\n")
    lab = _write(tmp_path / "labels.tsv", "x\t1\n")
    with pytest.raises(DataError, match=r"no label for sample\(s\) \['y'\]"):
        load_matrix(m, labels=lab)


SERIES = """!Series_title\t"A study"
!Sample_geo_accession\t"GSM1"\t"GSM2"\t"GSM3"
!Sample_characteristics_ch1\t"tissue: blood"\t"tissue: blood"\t"tissue: blood"
!Sample_characteristics_ch1\t"disease state: AML"\t"disease state: healthy"\t"disease state: AML"
!series_matrix_table_begin
"ID_REF"\t"GSM1"\t"GSM2"\t"GSM3"
"1007_s_at"\t5.1\t6.2\t7.3
"1053_at"\t1\t2\t3
!series_matrix_table_end
"""


def test_a_geo_series_matrix_loads_with_a_chosen_phenotype(tmp_path: Path) -> None:
    c = load_geo_series_matrix(_write(tmp_path / "GSE1_series_matrix.txt.gz", SERIES),
                               phenotype="disease state", positive="AML")  # fmt: skip
    assert c.samples == ["GSM1", "GSM2", "GSM3"] and c.genes == ["1007_s_at", "1053_at"]
    np.testing.assert_array_equal(c.y, [1, 0, 1])
    np.testing.assert_array_equal(c.x[:, 0], np.float32([5.1, 6.2, 7.3]))
    with pytest.raises(DataError, match="no 'cell type' for sample"):
        load_geo_series_matrix(tmp_path / "GSE1_series_matrix.txt.gz", phenotype="cell type",
                               positive="AML")  # fmt: skip
    with pytest.raises(DataError, match="need two classes"):
        load_geo_series_matrix(tmp_path / "GSE1_series_matrix.txt.gz", phenotype="tissue",
                               positive="AML")  # fmt: skip


def test_genes_are_aligned_by_name_and_scaling_uses_training_data_only() -> None:
    a = simulate_cohort([StudySpec(20, 20)], genes=50, seed=0)
    b = simulate_cohort([StudySpec(20, 20)], genes=50, seed=1)
    b.genes = list(reversed(a.genes[:30])) + [f"X{i}" for i in range(20)]
    left, right = align_genes([a, b])
    assert left.genes == right.genes == a.genes[:30]
    np.testing.assert_array_equal(right.x[:, 0], b.x[:, 29])
    train, test = stratified_split(a.y, 0.2, seed=0)
    assert len(test) == 8 and set(a.y[test]) == {0, 1} and not set(train) & set(test)
    scaler = Standardizer.fit(a.x[train])
    z = scaler.transform(a.x[train])
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    shifted = a.x.copy()
    shifted[test] += 100  # test samples cannot move the scaling
    assert Standardizer.fit(shifted[train]).mean.tobytes() == scaler.mean.tobytes()
