"""The CTR sets' (and FuxiCTR export's) PCA (scikit-learn) against its definition: centred data times the top right
singular vectors, equal up to each component's sign; explained variance = share of the squared singular values."""
import numpy as np

from mmfeat.recommenders.ctr import reduce_dim as _pca


def test_pca_matches_the_svd_definition_up_to_sign():
    rng = np.random.default_rng(0)
    mat = (rng.normal(size=(50, 12)) @ rng.normal(size=(12, 12))).astype(np.float32)
    got, explained, padded = _pca(mat, 4, False, "t")
    centered = mat - mat.mean(axis=0)
    _, sing, vt = np.linalg.svd(centered.astype(np.float64), full_matrices=False)
    ref = centered @ vt[:4].T
    signs = np.sign((got * ref).sum(0))
    assert got.shape == (50, 4) and got.dtype == np.float32 and padded == 0
    assert np.allclose(got, ref * signs, atol=1e-4)
    assert np.isclose(explained, (sing[:4] ** 2).sum() / (sing ** 2).sum(), atol=1e-6)


def test_pca_of_a_constant_matrix_explains_nothing_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, explained, _ = _pca(np.ones((6, 8), np.float32), 3, False, "t")
    assert explained == 0.0 and np.allclose(got, 0.0)
