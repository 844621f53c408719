"""Medical file formats: NIfTI round trips, slice and mask readers, ITK transforms, PNG panels."""

import numpy as np
import pytest
from PIL import Image
from sciflow_domains.medical.io import (
    ItkAffine,
    normalise_intensity,
    read_itk_affine,
    read_mask,
    read_nifti,
    read_slice,
    write_nifti,
    write_nifti_like,
    write_panel,
)

AFFINE = np.array(
    [[-0.72, 0.01, 0.0, 114.8], [0.0, -0.72, 0.02, 109.4], [0.0, 0.0, 3.0, -85.7], [0, 0, 0, 1]]
)


def test_nifti_round_trip_keeps_affine_and_data(tmp_path):
    data = np.random.default_rng(0).random((9, 7, 5)).astype(np.float32)
    path = write_nifti(tmp_path / "x.nii.gz", data, AFFINE)
    back, affine = read_nifti(path)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(affine, AFFINE, atol=1e-5)


def test_write_nifti_like_takes_the_reference_affine(tmp_path):
    reference = write_nifti(tmp_path / "in.nii.gz", np.zeros((4, 5, 6), np.float32), AFFINE)
    prediction = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    out = write_nifti_like(tmp_path / "pred.nii.gz", prediction, reference)
    back, affine = read_nifti(out)
    np.testing.assert_array_equal(back, prediction)
    np.testing.assert_allclose(affine, AFFINE, atol=1e-5)
    with pytest.raises(ValueError, match=r"spatial shape \(4, 5, 6\)"):
        write_nifti_like(tmp_path / "bad.nii.gz", np.zeros((4, 5, 7)), reference)


def test_write_nifti_rejects_bad_affines_and_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"affine: expected a finite \(4, 4\)"):
        write_nifti(tmp_path / "a.nii", np.zeros((2, 2, 2)), np.eye(3))
    singular = np.eye(4)
    singular[2, 2] = 0.0
    with pytest.raises(ValueError, match="invertible"):
        write_nifti(tmp_path / "a.nii", np.zeros((2, 2, 2)), singular)
    with pytest.raises(ValueError, match="2-D to 4-D"):
        write_nifti(tmp_path / "a.nii", np.zeros(5), np.eye(4))


def test_read_slice_scales_8_and_16_bit_to_unit_range(tmp_path):
    grey = np.array([[0, 128], [255, 64]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_slice(tmp_path / "g.png"), grey[None] / 255.0, atol=1e-7)
    deep = np.array([[0, 65535], [1000, 30000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_allclose(read_slice(tmp_path / "d.png"), deep[None] / 65535.0, atol=1e-7)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    image = read_slice(tmp_path / "c.png")
    assert image.shape == (3, 3, 4) and np.allclose(image[1], 200 / 255)


def test_read_mask_refuses_an_empty_mask_when_required(tmp_path):
    write_nifti(tmp_path / "m.nii.gz", np.zeros((3, 3, 3), np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="is empty"):
        read_mask(tmp_path / "m.nii.gz")
    assert not read_mask(tmp_path / "m.nii.gz", require_nonempty=False).any()
    labels = np.array([[0, 2], [1, 0]], np.uint8)
    Image.fromarray(labels).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), labels)


def test_itk_affine_reads_parameters_and_maps_points(tmp_path):
    text = (
        "#Insight Transform File V1.0\r\n#Transform 0\r\n"
        "Transform: MatrixOffsetTransformBase_double_3_3\r\n"
        "Parameters: 0 -1 0 1 0 0 0 0 1 1 2 3\r\nFixedParameters: 10 0 0\r\n"
    )
    (tmp_path / "t.txt").write_text(text)
    transform = read_itk_affine(tmp_path / "t.txt")
    assert isinstance(transform, ItkAffine)
    point = np.array([11.0, 0.0, 0.0, 1.0])  # p - c = (1, 0, 0) -> A(p - c) = (0, 1, 0)
    np.testing.assert_allclose(transform.homogeneous() @ point, [10 + 1, 1 + 2, 3, 1])
    (tmp_path / "bad.txt").write_text("Parameters: 1 2 3\nFixedParameters: 0 0 0\n")
    with pytest.raises(ValueError, match="12 Parameters"):
        read_itk_affine(tmp_path / "bad.txt")


def test_normalise_intensity_divides_by_the_percentile_in_the_mask():
    image = np.linspace(0, 10, 100).reshape(10, 10)
    out = normalise_intensity(image, mask=image > 5, percentile=100)
    assert out.dtype == np.float32 and out.max() == 1.0
    np.testing.assert_allclose(out[0, 5], image[0, 5] / 10, rtol=1e-6)
    with pytest.raises(ValueError, match="mask: is empty"):
        normalise_intensity(image, mask=np.zeros_like(image, bool))


def test_panel_writer_tiles_four_panels(tmp_path):
    rng = np.random.default_rng(1)
    x0, pred, truth = (rng.random((16, 20)) for _ in range(3))
    path = write_panel(tmp_path / "p.png", x0, pred[None], truth, zoom=2)
    with Image.open(path) as image:
        assert image.mode == "RGB"
        assert image.size == (4 * 40 + 3 * 4, 32 + 14)
        diff_panel = np.asarray(image)[14:, 3 * 44 :]
    signed = np.clip((pred - truth) / 0.5, -1, 1)
    red = np.kron(np.clip(signed, 0, 1), np.ones((2, 2)))  # positive differences lose green+blue
    np.testing.assert_allclose(diff_panel[..., 2] / 255.0, 1 - red, atol=1 / 255 + 1e-6)
    with pytest.raises(ValueError, match=r"predicted: expected shape \(16, 20\)"):
        write_panel(tmp_path / "q.png", x0, pred[:8], truth)
    with pytest.raises(ValueError, match="NaN"):
        write_panel(tmp_path / "q.png", x0, pred, np.full_like(truth, np.nan))
