"""The embedded phantom dataset: determinism, MSD layout, geometry, anatomy, splits and CLI behaviour."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from semcl_phantoms import phantoms
from semcl_phantoms.anatomy import LABEL_NAMES
from semcl_phantoms.datalists import make_low_label_splits
from semcl_phantoms.phantoms import generate_phantom, main, write_phantom_dataset

SIZE = (32, 32, 32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms") / "ds"
    write_phantom_dataset(out, num=6, seed=3, size=SIZE, spacing=2.0, preview=True, verbose=False)
    return out


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files(dataset, tmp_path):
    again = tmp_path / "again"
    write_phantom_dataset(again, num=6, seed=3, size=SIZE, spacing=2.0, preview=True, verbose=False)
    assert _file_bytes(again) == _file_bytes(dataset)


def test_other_seed_gives_other_volumes():
    a = generate_phantom(SIZE, seed=(0, 0))
    b = generate_phantom(SIZE, seed=(1, 0))
    assert not np.array_equal(a.image, b.image)


def test_msd_layout_and_dataset_json(dataset):
    meta = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    assert meta["modality"] == {"0": "CT"}
    assert meta["numTraining"] == 6 == len(meta["training"])
    assert meta["labels"]["0"] == "background"
    names = set(meta["labels"].values())
    assert {"spleen", "right kidney", "left kidney", "gallbladder", "liver", "stomach", "aorta", "pancreas"} <= names
    for item in meta["training"]:
        assert (dataset / item["image"]).is_file() and (dataset / item["label"]).is_file()
        assert Path(item["image"]).name == Path(item["label"]).name
    assert sorted(p.name for p in dataset.iterdir()) == [
        "datalist.json",
        "dataset.json",
        "imagesTr",
        "labelsTr",
        "preview.png",
    ]


def test_nifti_geometry_and_types(dataset):
    image = nib.load(dataset / "imagesTr" / "phantom_000.nii.gz")
    label = nib.load(dataset / "labelsTr" / "phantom_000.nii.gz")
    assert image.shape == label.shape == SIZE
    assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
    assert image.header.get_zooms() == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(image.affine, label.affine)
    np.testing.assert_allclose(np.diag(image.affine)[:3], [2.0, 2.0, 2.0])
    # the volume's centre sits at the world origin
    centre = image.affine @ np.array([*(np.array(SIZE) - 1) / 2.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-6)
    assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
    assert image.header.get_xyzt_units()[0] == "mm"


def test_every_organ_appears_and_labels_are_known():
    subjects = [generate_phantom(SIZE, seed=(7, i)) for i in range(12)]
    seen = set()
    for s in subjects:
        values = set(np.unique(s.label).tolist())
        assert values <= set(LABEL_NAMES)
        seen |= values
    assert seen == set(LABEL_NAMES)


def test_gallbladder_is_absent_in_some_subjects():
    present = [("gallbladder" in generate_phantom((24, 24, 24), seed=(5, i)).present) for i in range(24)]
    assert 0 < sum(present) < len(present)


def test_hounsfield_ranges_are_ct_like():
    s = generate_phantom(SIZE, seed=(0, 1))
    assert s.image.min() >= -1024 and s.image.max() <= 3071
    assert s.image[0, 0, :].mean() < -900  # air outside the body
    liver = s.image[s.label == 5]
    assert -50 < liver.mean() < 200


def test_organ_intensity_shifts_between_subjects_and_overlaps():
    def means(label: int) -> list[float]:
        values = []
        for i in range(10):
            s = generate_phantom((24, 24, 24), seed=(11, i))
            if (s.label == label).any():
                values.append(float(s.image[s.label == label].mean()))
        return values

    liver, spleen = means(5), means(1)
    assert max(liver) - min(liver) > 20.0  # contrast phase and offsets move an organ's mean HU
    # intensity alone cannot tell liver from spleen: their per-subject means overlap
    assert min(spleen) < max(liver) and min(liver) < max(spleen)


def test_splits_are_disjoint_nested_and_complete(dataset):
    splits = json.loads((dataset / "datalist.json").read_text(encoding="utf-8"))
    images = {k: [i["image"] for i in v] for k, v in splits.items()}
    finetune = images[max((k for k in images if k.startswith("finetune_")), key=lambda k: int(k.split("_")[1]))]
    groups = [images["pretrain"], finetune, images["validation"], images["test"]]
    flat = [x for g in groups for x in g]
    assert len(flat) == len(set(flat)) == 6
    assert all(len(g) >= 1 for g in groups)
    assert images["finetune_1"] == finetune[:1] and images["finetune_2"] == finetune[:2]


def test_splits_of_a_larger_cohort_have_all_finetune_sizes():
    items = [{"image": f"i{i}", "label": f"l{i}"} for i in range(24)]
    splits = make_low_label_splits(items, seed=0)
    assert [len(splits[f"finetune_{k}"]) for k in (1, 2, 4, 8)] == [1, 2, 4, 8]
    assert splits["finetune_4"] == splits["finetune_8"][:4]
    assert make_low_label_splits(items, seed=0) == splits
    with pytest.raises(ValueError, match="at least 4"):
        make_low_label_splits(items[:3])


def test_preview_is_a_png(dataset):
    from PIL import Image

    with Image.open(dataset / "preview.png") as png:
        assert png.format == "PNG" and png.size[0] > 3 * SIZE[0]


def test_rerun_with_same_arguments_reuses_the_dataset(dataset):
    before = (dataset / "dataset.json").stat().st_mtime_ns
    summary = write_phantom_dataset(dataset, num=6, seed=3, size=SIZE, spacing=2.0, verbose=False)
    assert summary["reused"] and (dataset / "dataset.json").stat().st_mtime_ns == before


def test_other_arguments_on_an_existing_dataset_need_overwrite(dataset, capsys):
    assert main(["--out", str(dataset), "--num", "5", "--size", "32", "32", "32", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))["numTraining"] == 6


def test_cli_writes_a_dataset(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "d"), "--num", "4", "--size", "16", "16", "16", "--quiet"]) == 0
    assert "spleen" in capsys.readouterr().out
    assert len(list((tmp_path / "d" / "imagesTr").iterdir())) == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num", "2"], "--num must be >= 4"),
        (["--spacing", "0"], "--spacing must be > 0"),
        (["--size", "4", "32", "32"], "size must be three integers >= 8"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    out = tmp_path / "d"
    assert main(["--out", str(out), "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_reports_an_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["--out", str(blocker / "d"), "--num", "4", "--size", "16", "16", "16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot write the dataset" in err and "a_file" in err


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = phantoms.generate_phantom

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(phantoms, "generate_phantom", failing)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(tmp_path / "d", num=4, size=(16, 16, 16), verbose=False)
    assert list(tmp_path.iterdir()) == []


# sha256 over the image and label arrays (and the datalist) of a small `simple` dataset, computed from the generator
# before the `realistic` preset existed: committed benchmark results were measured on `simple`, so it must not change.
SIMPLE_PINNED_SHA256 = "0156deb7936b6c4ac251f11df87ed410d2cbbc5a58ce4d0f8b8543c94e9e0194"


def test_simple_preset_output_is_pinned(tmp_path):
    import hashlib

    out = tmp_path / "simple"
    write_phantom_dataset(out, num=4, seed=2, size=(20, 20, 20), spacing=2.0, verbose=False)
    digest = hashlib.sha256()
    for path in sorted((out / "imagesTr").iterdir()) + sorted((out / "labelsTr").iterdir()):
        digest.update(np.asarray(nib.load(path).dataobj).tobytes())
    digest.update((out / "datalist.json").read_bytes())
    assert digest.hexdigest() == SIMPLE_PINNED_SHA256


# --- the realistic preset -------------------------------------------------------------------------------------------

from semcl_phantoms.enhancement import PHASE_BUCKETS, EnhancementCurve, phase_bucket  # noqa: E402
from semcl_phantoms.realistic_phantom import generate_realistic_phantom  # noqa: E402
from semcl_phantoms.realistic_preset import REALISTIC  # noqa: E402

REALISTIC_SIZE = (48, 48, 36)


@pytest.fixture(scope="module")
def realistic_cohort() -> list:
    return [generate_phantom(REALISTIC_SIZE, seed=(4, i), preset="realistic") for i in range(10)]


@pytest.fixture(scope="module")
def realistic_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("realistic") / "ds"
    write_phantom_dataset(out, num=5, seed=1, size=(32, 32, 24), preview=True, verbose=False, preset="realistic")
    return out


def test_realistic_same_arguments_give_byte_identical_files(realistic_dataset, tmp_path):
    again = tmp_path / "again"
    write_phantom_dataset(again, num=5, seed=1, size=(32, 32, 24), preview=True, verbose=False, preset="realistic")
    assert _file_bytes(again) == _file_bytes(realistic_dataset)


def test_realistic_other_seed_gives_other_volumes():
    a = generate_phantom(REALISTIC_SIZE, seed=(0, 0), preset="realistic")
    b = generate_phantom(REALISTIC_SIZE, seed=(1, 0), preset="realistic")
    assert not np.array_equal(a.image, b.image) and not np.array_equal(a.label, b.label)


def test_realistic_every_organ_in_every_subject(realistic_cohort):
    for subject in realistic_cohort:
        assert set(np.unique(subject.label).tolist()) == set(LABEL_NAMES)
        assert sorted(subject.present) == sorted(v for k, v in LABEL_NAMES.items() if k > 0)


def test_realistic_spacing_and_affine_match_the_field_of_view(realistic_dataset):
    image = nib.load(realistic_dataset / "imagesTr" / "phantom_000.nii.gz")
    label = nib.load(realistic_dataset / "labelsTr" / "phantom_000.nii.gz")
    expected = np.array(REALISTIC.fov_mm) / np.array((32, 32, 24))
    np.testing.assert_allclose(image.header.get_zooms(), expected, rtol=1e-5)
    np.testing.assert_allclose(np.diag(image.affine)[:3], expected, rtol=1e-5)
    np.testing.assert_allclose(image.affine, label.affine)
    # the volume spans the field of view (an upper abdomen, ~300-350 mm across) and is centred on the origin
    np.testing.assert_allclose(np.array(image.shape) * np.diag(image.affine)[:3], REALISTIC.fov_mm, rtol=1e-5)
    centre = image.affine @ np.array([*(np.array(image.shape) - 1) / 2.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-4)
    meta = json.loads((realistic_dataset / "dataset.json").read_text(encoding="utf-8"))["generator"]
    np.testing.assert_allclose(meta["spacing_mm"], expected, rtol=1e-5)
    assert meta["preset"] == "realistic"


def test_realistic_body_is_abdomen_sized(realistic_cohort):
    spacing = np.array(realistic_cohort[0].spacing_mm)
    for subject in realistic_cohort:
        body = subject.image > -500
        width = np.ptp(np.argwhere(body.any(axis=(1, 2)))) * spacing[0]
        assert 230.0 < width < 400.0


def test_realistic_anisotropic_size_gives_thicker_slices():
    subject = generate_phantom((32, 32, 8), seed=(0, 0), preset="realistic")
    assert subject.spacing_mm[2] > 2 * subject.spacing_mm[0]
    assert subject.image.shape == (32, 32, 8)


def test_realistic_organ_positions_vary_by_centimetres(realistic_cohort):
    spacing = np.array(realistic_cohort[0].spacing_mm)
    for k in (1, 2, 5, 8):  # spleen, right kidney, liver, pancreas
        centroids = np.array([np.argwhere(s.label == k).mean(0) * spacing for s in realistic_cohort])
        spread = float(np.linalg.norm(centroids.std(0)))
        assert 8.0 < spread < 60.0, f"{LABEL_NAMES[k]}: centroid sd {spread:.1f} mm"


def test_realistic_gallbladder_lies_in_the_liver_fossa(realistic_cohort):
    from scipy import ndimage

    # the voxels just outside the gallbladder: in its fossa the liver covers a good part of it (round 2's template,
    # 26 mm below the liver's inferior surface, touched the liver on 6% of them and lay in fat beside the bowel)
    shares = []
    for subject in realistic_cohort:
        gallbladder = subject.label == 4
        shell = ndimage.binary_dilation(gallbladder) & ~gallbladder
        shares.append(float((subject.label[shell] == 5).mean()))
    assert np.mean(shares) > 0.25, np.round(shares, 2)
    assert min(shares) > 0.05, np.round(shares, 2)


@pytest.mark.parametrize("size", [(32, 32, 24), (64, 64, 48)])
def test_realistic_noise_is_averaged_down_on_a_coarser_grid(size, monkeypatch):
    # the scanner's noise sd is set for a reconstruction of the reference voxel size; a voxel of volume V averages it
    # to sd x sqrt(V_reference / V). The same seed without noise isolates it (the draws are the same).
    def image(noise_hu: float) -> np.ndarray:
        preset = replace(REALISTIC, noise_sd_hu=(noise_hu, noise_hu))
        return generate_realistic_phantom(size, seed=(2, 0), preset=preset).image.astype(np.float32)

    noise = image(20.0) - image(0.0)
    voxel_mm3 = np.prod(np.array(REALISTIC.fov_mm) / np.array(size))
    expected = 20.0 * np.sqrt(np.prod(REALISTIC.noise_reference_voxel_mm) / voxel_mm3)
    inside = np.abs(image(0.0)) < 500  # away from the clipped air and bone
    assert float(noise[inside].std()) == pytest.approx(expected, rel=0.15)


def test_realistic_distractors_are_drawn_but_labelled_background(realistic_cohort):
    from scipy import ndimage

    for subject in realistic_cohort:
        background = subject.label == 0
        body = np.stack([ndimage.binary_fill_holes(s > -500) for s in np.moveaxis(subject.image, 2, 0)], axis=2)
        assert (subject.image[background] > 300).sum() > 50  # vertebrae and ribs
        assert ((subject.image < -600) & body & background).sum() > 0  # bowel gas or lung bases inside the body


def test_realistic_datalist_entries_record_phase_and_dataset_json_the_contrast_time(realistic_dataset):
    meta = json.loads((realistic_dataset / "dataset.json").read_text(encoding="utf-8"))
    splits = json.loads((realistic_dataset / "datalist.json").read_text(encoding="utf-8"))
    times = meta["generator"]["contrast_times_s"]
    for item in meta["training"] + [i for v in splits.values() for i in v]:
        assert item["contrast_phase"] in PHASE_BUCKETS
        assert None not in item.values()  # a None in an entry reaches the batches, which cannot collate it
        time_s = times[Path(item["image"]).name.split(".")[0]]
        assert item["contrast_phase"] == phase_bucket(time_s, REALISTIC.arterial_end_s, REALISTIC.portal_venous_end_s)
    case = Path(meta["training"][0]["image"]).name.split(".")[0]
    assert meta["generator"]["contrast_phases"][case] == meta["training"][0]["contrast_phase"]


def test_realistic_every_phase_bucket_occurs_in_a_modest_cohort():
    phases = {generate_phantom((16, 16, 12), seed=(2, i), preset="realistic").phase for i in range(30)}
    assert phases == set(PHASE_BUCKETS)


def test_enhancement_curves_follow_contrast_timing():
    aorta, liver = REALISTIC.tissues["blood_arterial"].curve, REALISTIC.tissues["liver"].curve
    assert aorta(None) == 0.0 and aorta(5.0) == 0.0
    assert aorta(28.0) > 200.0 and aorta(28.0) > aorta(70.0)  # arterial peak, then recirculation
    assert liver(70.0) > liver(28.0) + 30.0  # the liver peaks in the portal venous phase
    cortex, medulla = REALISTIC.tissues["kidney_cortex"].curve, REALISTIC.tissues["kidney_medulla"].curve
    assert cortex(30.0) - medulla(30.0) > 100.0  # corticomedullary phase
    assert abs(cortex(110.0) - medulla(110.0)) < 40.0  # nephrographic phase: homogeneous
    with pytest.raises(ValueError, match="arrival_s < peak_s"):
        EnhancementCurve(30.0, 20.0, 100.0, 50.0)


def test_realistic_preview_shows_several_subjects(realistic_dataset):
    from PIL import Image

    with Image.open(realistic_dataset / "preview.png") as png:
        # five subjects side by side, each column the field of view's width at 2 mm per pixel
        assert png.format == "PNG" and png.size[0] >= 5 * REALISTIC.fov_mm[0] / 2.0


def test_realistic_rejects_a_spacing(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "d"), "--preset", "realistic", "--spacing", "1.5", "--quiet"]) == 2
    assert "choose --size instead" in capsys.readouterr().err


def test_cli_writes_a_realistic_dataset_and_records_the_preset(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["--out", str(out), "--preset", "realistic", "--num", "4", "--size", "16", "16", "12", "--quiet"]) == 0
    assert "preset: realistic" in capsys.readouterr().out
    assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["generator"]["preset"] == "realistic"
    # the same folder is not mistaken for a simple dataset of the same size
    with pytest.raises(ValueError, match="--overwrite"):
        write_phantom_dataset(out, num=4, size=(16, 16, 12), verbose=False)


def test_ensure_phantom_dataset_writes_the_chosen_preset(tmp_path):
    from semcl_components.bundle_runtime.phantom_dataset import ensure_phantom_dataset

    folder = ensure_phantom_dataset(tmp_path / "p", num=4, size=(16, 16, 12), preset="realistic")
    assert json.loads((Path(folder) / "dataset.json").read_text(encoding="utf-8"))["generator"]["preset"] == "realistic"
