"""The grouping policy (``ssic_cli.mask``): regions -> block mask, ``GroupPolicy``, the conflict rule."""
from __future__ import annotations

import numpy as np
import pytest

from ssic_cli.detect import build_group_mask
from ssic_cli.detect.base import Region
from ssic_cli.detect.user import regions_from_coco, regions_from_label_map
from ssic_cli.errors import SsicError
from ssic_cli.mask import (BACKGROUND, BLOCK_SIZES, GroupPolicy, block_pixel_counts, grid_shape,
                           mask_block_counts, region_pixels, regions_to_group_mask)

from .shared_data import COCO_JSON, EXAMPLE, box, coco_regions, coco_sample, load_coco, load_rgb, needs_coco, pixel_groups


@pytest.fixture(scope="module")
def coco():
    return load_coco()


# ------------------------------------------------------------------------------------ policy

def test_a_class_name_users_cannot_type_back_is_refused_before_any_coding(tmp_path):
    with pytest.raises(SsicError, match="group name 'cat,dog' cannot be used"):
        regions_to_group_mask([Region("cat,dog", (0, 0, 32, 32))], 64, 64)
    regions_to_group_mask([Region("cat,dog", (0, 0, 32, 32), score=0.1)], 64, 64)   # dropped: never a name
    names = tmp_path / "names.json"
    names.write_text('{"1": "bell\\u0007"}', encoding="utf-8")
    from ssic_cli.detect.user import read_names
    with pytest.raises(SsicError, match=r"names file .*: id 1: 'bell\\x07' cannot be used"):
        read_names(names)


def test_no_regions_is_one_background_group():
    gm = regions_to_group_mask([], 100, 70, block_size=32)
    assert gm.names == [BACKGROUND] and gm.ids.shape == grid_shape(100, 70, 32) == (3, 4)
    assert not gm.ids.any()


def test_block_counts_partial_edges():
    counts = block_pixel_counts(100, 70, 32)
    assert counts.sum() == 100 * 70
    assert counts[-1, -1] == (70 - 64) * (100 - 96)
    m = np.zeros((70, 100), bool)
    m[60:70, 90:100] = True
    c = mask_block_counts(m, 32)
    assert c.sum() == 100 and c[1, 2] == 4 * 6 and c[2, 3] == 6 * 4


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_any_overlap_claims_block_and_threshold_rejects(block_size):
    b = block_size
    # covers 4 pixels of block (0, 0) and the whole of block (0, 1)
    r = box("car", b - 2, 0, 2 * b, 2)
    gm = regions_to_group_mask([r], 3 * b, 2 * b, block_size=b)
    assert gm.names == [BACKGROUND, "car"]
    assert gm.ids[0].tolist() == [1, 1, 0] and not gm.ids[1].any()
    full = box("car", b - 2, 0, 2 * b, b)              # block 0: 2*b of b*b px; block 1: all
    gm = regions_to_group_mask([full], 3 * b, 2 * b, block_size=b, coverage=0.5)
    assert gm.ids[0].tolist() == [0, 1, 0]
    # coverage is "more than": a block covered exactly half is not claimed at 0.5
    half = box("car", 0, 0, b // 2, b)
    gm = regions_to_group_mask([half], 2 * b, b, block_size=b, coverage=0.5)
    assert gm.names == [BACKGROUND]


def test_coverage_uses_in_image_pixels_of_edge_blocks():
    # image 40 x 40, B = 32: the edge block holds 8 x 8 pixels; a 6 x 8 box covers 75 % of it
    r = box("dog", 34, 32, 40, 40)
    gm = regions_to_group_mask([r], 40, 40, block_size=32, coverage=0.7)
    assert gm.names == [BACKGROUND, "dog"] and gm.ids[1, 1] == 1


def test_masks_are_used_at_pixel_level():
    m = np.zeros((64, 96), bool)
    m[40, 70] = True                                   # one pixel in block (1, 2)
    r = Region("cat", (70, 40, 71, 41), 1.0, m)
    gm = regions_to_group_mask([r], 96, 64, block_size=32)
    assert gm.ids.tolist() == [[0, 0, 0], [0, 0, 1]]
    with pytest.raises(SsicError, match="mask"):
        regions_to_group_mask([Region("cat", (0, 0, 1, 1), 1.0, np.ones((10, 10), bool))], 96, 64)


def overlapping_people():
    # two persons sharing block column 1; A covers more of it than B
    a = box("person", 0, 0, 48, 32, score=0.9)           # blocks (0,0) full, (0,1) half
    b = box("person", 40, 0, 96, 32, score=0.8)          # blocks (0,1) 3/4, (0,2) full
    return [a, b]


def test_class_grouping_merges_overlapping_instances():
    gm = regions_to_group_mask(overlapping_people(), 128, 64, block_size=32)
    assert gm.names == [BACKGROUND, "person"]
    assert gm.ids.tolist() == [[1, 1, 1, 0], [0, 0, 0, 0]]


def test_instance_grouping_keeps_overlapping_instances_apart():
    gm = regions_to_group_mask(overlapping_people(), 128, 64, block_size=32, group_by="instance")
    assert gm.names == [BACKGROUND, "person", "person#2"]
    assert gm.labels == [BACKGROUND, "person", "person"]
    # instance 1 = highest score (A); the shared block goes to B, which covers more of it
    assert gm.ids.tolist() == [[1, 2, 2, 0], [0, 0, 0, 0]]


def test_explicit_instance_numbers_win_over_score():
    a, b = overlapping_people()
    a.instance, b.instance = 2, 1
    gm = regions_to_group_mask([a, b], 128, 64, block_size=32, group_by="instance")
    assert gm.ids.tolist()[0] == [2, 1, 1, 0]


def test_conflict_tie_goes_to_smaller_group_and_order_does_not_matter():
    big = box("bench", 0, 0, 64, 32)                   # both cover block (0, 0) fully
    small = box("tie", 0, 0, 32, 32)
    gm1 = regions_to_group_mask([big, small], 64, 32, block_size=32)
    gm2 = regions_to_group_mask([small, big], 64, 32, block_size=32)
    assert gm1.names == gm2.names == ["bench", "tie"]        # no block left: no background
    assert gm1.ids.tolist() == gm2.ids.tolist() == [[1, 0]]


def test_group_with_no_block_left_is_dropped():
    big = box("person", 0, 0, 64, 64)
    inside = box("person", 10, 10, 20, 20, score=0.5)  # instance 2, loses its only block
    gm = regions_to_group_mask([big, inside], 64, 64, block_size=32, group_by="instance")
    assert gm.names == ["person"] and not gm.ids.any()


def test_merge_overlaps_measures_union_coverage():
    # two regions of one class each cover 40 % of block (0, 0), together 80 %
    a = box("car", 0, 0, 32, 13)
    b = box("car", 0, 19, 32, 32)
    merged = regions_to_group_mask([a, b], 64, 32, block_size=32, coverage=0.5)
    apart = regions_to_group_mask([a, b], 64, 32, block_size=32, coverage=0.5, merge_overlaps=False)
    assert merged.ids.tolist() == [[1, 0]] and merged.names == [BACKGROUND, "car"]
    assert apart.names == [BACKGROUND]


def test_classes_filter_and_min_score():
    regions = [box("person", 0, 0, 32, 32, 0.9), box("car", 32, 0, 64, 32, 0.9),
               box("dog", 64, 0, 96, 32, 0.1)]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32, classes=["person"])
    assert gm.names == [BACKGROUND, "person"] and gm.ids.tolist() == [[1, 0, 0]]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32, classes="person, car")
    assert gm.names == [BACKGROUND, "car", "person"]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32, min_score=0.25)
    assert gm.names == [BACKGROUND, "car", "person"]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32, min_score=0.0)
    assert gm.names == ["car", "dog", "person"]
    assert GroupPolicy().min_score == 0.25                    # the CLI's --min-score default


def test_cap_merges_smallest_into_other():
    # five classes with 5, 4, 3, 2, 1 blocks in a 16 x 1 block strip (one background block)
    regions, x = [], 0
    for label, n in zip("abcde", (5, 4, 3, 2, 1)):
        regions.append(box(label, x, 0, x + 32 * n, 32))
        x += 32 * n
    gm = regions_to_group_mask(regions, 32 * 16, 32, block_size=32, max_groups=4)
    assert gm.names == [BACKGROUND, "a", "b", "other"]
    counts = [gm.block_count(g) for g in range(gm.num_groups)]
    assert counts == [1, 5, 4, 3 + 2 + 1]
    gm = regions_to_group_mask(regions, 32 * 16, 32, block_size=32, max_groups=2)
    assert gm.names == [BACKGROUND, "other"]
    gm = regions_to_group_mask(regions, 32 * 16, 32, block_size=32, max_groups=1)
    assert gm.names == [BACKGROUND] and not gm.ids.any()


def test_full_coverage_means_fully_covered_blocks():
    r = box("car", 0, 0, 40, 32)
    gm = regions_to_group_mask([r], 64, 32, block_size=32, coverage=1.0)
    assert gm.ids.tolist() == [[1, 0]]


@pytest.mark.parametrize("kwargs", [dict(block_size=8), dict(coverage=1.5), dict(group_by="x"),
                                    dict(max_groups=0), dict(max_groups=256)])
def test_policy_rejects_bad_arguments(kwargs):
    with pytest.raises(SsicError):
        regions_to_group_mask([], 64, 64, **kwargs)


# ------------------------------------------------------------------ COCO ground truth policy

@needs_coco
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_coco_every_annotated_pixel_is_in_its_group(coco, block_size):
    """For each kept class alone (class and instance grouping) every pixel of it lies in a block
    of its group; with all classes kept, no annotated pixel is left in background."""
    checked = 0
    for fn in coco_sample(coco):
        img, regions = coco_regions(coco, fn)
        h, w = img.shape[:2]
        areas = {}
        for r in regions:
            areas[r.label] = areas.get(r.label, 0) + int(region_pixels(r, w, h).sum())
        kept = sorted(areas, key=lambda c: -areas[c])[:2]
        for cls in kept:
            gm = regions_to_group_mask(regions, w, h, block_size=block_size, classes=[cls],
                                       min_score=0.0)
            groups = pixel_groups(gm, w, h)
            g = gm.index_of(cls)
            for r in regions:
                if r.label == cls:
                    assert (groups[region_pixels(r, w, h)] == g).all(), (fn, cls, block_size)
                    checked += 1
        gm = regions_to_group_mask(regions, w, h, block_size=block_size, max_groups=255)
        groups = pixel_groups(gm, w, h)
        fg = np.zeros((h, w), bool)
        for r in regions:
            fg |= region_pixels(r, w, h)
        if BACKGROUND in gm.names:
            assert not (groups[fg] == gm.index_of(BACKGROUND)).any(), (fn, block_size)
    assert checked >= 20


@needs_coco
def test_coco_instance_grouping_names_and_masks(coco):
    img, regions = coco_regions(coco, "000000184324.jpg")
    h, w = img.shape[:2]
    n_person = sum(r.label == "person" for r in regions)
    gm = regions_to_group_mask(regions, w, h, block_size=16, group_by="instance",
                               classes=["person"], max_groups=255)
    persons = [n for n in gm.names if n.split("#")[0] == "person"]
    assert 2 <= len(persons) <= n_person and persons[0] == "person" and "person#2" in persons
    assert gm.names[0] == BACKGROUND


def test_float_boxes_grow_to_whole_pixels():
    r = Region("car", (31.5, 0.2, 32.2, 10.0))       # third-party float box touching two blocks
    gm = regions_to_group_mask([r], 96, 32, block_size=32)
    assert gm.ids.tolist() == [[1, 1, 0]]
    with pytest.raises(SsicError, match="finite"):
        regions_to_group_mask([Region("car", (float("nan"), 0, 1, 1))], 96, 32)


# ------------------------------------------------------------ priority classes (what is sealed)

def _small_person_on_a_car() -> list[Region]:
    """A 96×64 car box; a 20×24 person mask overlapping its middle blocks (each of the person's
    blocks is covered more by the car than by the person)."""
    person = np.zeros((64, 96), bool)
    person[20:44, 38:58] = True
    return [Region("car", (0, 0, 96, 64), 0.9), Region("person", (38, 20, 58, 44), 0.8, person)]


def test_a_region_whose_blocks_all_go_to_another_group_is_reported_not_dropped(monkeypatch):
    gm = regions_to_group_mask(_small_person_on_a_car(), 96, 64, block_size=16, priority=())   # no priority class
    assert "person" not in gm.names and gm.merged == {"person": "car"}
    import ssic_cli.detect as det
    monkeypatch.setattr(det, "detect_regions", lambda *a, **k: _small_person_on_a_car())
    lines = []
    build_group_mask(np.zeros((64, 96, 3), np.uint8), detector="saliency", block_size=16, priority=(),
                     log=lines.append)
    assert "person merged into car" in lines[0]


def test_priority_class_claims_every_block_it_touches_and_wins_conflicts():
    regions = _small_person_on_a_car()
    for coverage in (0.0, 0.5, 1.0):
        gm = regions_to_group_mask(regions, 96, 64, block_size=16, coverage=coverage, priority={"person"})
        groups = pixel_groups(gm, 96, 64)
        person = gm.index_of("person")
        assert (groups[regions[1].mask] == person).all() and not gm.merged
        touched = mask_block_counts(regions[1].mask, 16) > 0
        assert np.array_equal(gm.ids == person, touched)              # exactly the touched blocks


@needs_coco
@pytest.mark.slow
@pytest.mark.parametrize("block_size", (16, 32))
def test_no_annotated_person_pixel_leaves_the_person_groups(coco, block_size):
    """Over every shared COCO image with a person: with `person` first (the default, and what
    --seal person does), no annotated person pixel lies in a block of a non-person group, even at
    coverage 0.5 and grouped by instance. The old rule (largest coverage wins) leaked."""
    with_person = {a["image_id"] for a in coco["annotations"] if a["category_id"] == 1}
    images = [im for im in coco["images"] if im["id"] in with_person]
    visible = leaked_before = total = 0
    for im in images:
        w, h = im["width"], im["height"]
        regions = regions_from_coco(COCO_JSON, im["file_name"], data=coco)
        person = np.zeros((h, w), bool)
        for r in regions:
            if r.label == "person":
                person |= region_pixels(r, w, h)
        total += int(person.sum())
        for policy in (GroupPolicy(priority=(), group_by="instance"),                  # the old rule
                       GroupPolicy(priority={"face", "person"}, coverage=0.5, group_by="instance"),
                       GroupPolicy()):                                                  # the default
            gm = regions_to_group_mask(regions, w, h, policy, block_size=block_size, min_score=0, max_groups=255)
            labels = np.asarray(gm.labels)[pixel_groups(gm, w, h)]
            shown = int((person & (labels != "person")).sum())
            if policy.priority:
                visible += shown
            else:
                leaked_before += shown
    assert len(images) >= 100 and total > 0
    assert visible == 0
    assert leaked_before > 0, "the old rule no longer leaks: this test would prove nothing"


# ------------------------------------------------------- the default conflict rule: person first

def test_person_pixels_stay_in_the_person_group_by_default():
    """The README photo's label map: a person behind scissors, a handbag and a bicycle. The old rule
    (largest coverage wins; ``priority=()``) coded 0.9 % of the person with the scissors; by default
    every block holding a person pixel is a person block (docs/grouping.md measures it on COCO)."""
    img = load_rgb(EXAMPLE.with_suffix(".jpg"))
    h, w = img.shape[:2]
    regions = regions_from_label_map(f"{EXAMPLE}_labels.png", f"{EXAMPLE}_names.json", w, h)
    person = np.zeros((h, w), bool)
    for r in regions:
        if r.label == "person":
            person |= region_pixels(r, w, h)

    def outside(gm):
        return (person & (np.asarray(gm.labels)[gm.pixel_ids(w, h)] != "person")).sum() / person.sum()

    assert 0.005 < outside(regions_to_group_mask(regions, w, h, priority=())) < 0.02
    gm = regions_to_group_mask(regions, w, h)
    assert outside(gm) == 0 and GroupPolicy().priority == ("person",)
    touched = mask_block_counts(person, gm.block_size) > 0
    assert (np.asarray(gm.labels)[gm.ids[touched]] == "person").all()


def test_priority_classes_rank_in_the_order_given():
    a = box("dog", 0, 0, 32, 16)                       # both cover block (0, 1) fully
    b = box("cat", 16, 0, 48, 16)
    assert regions_to_group_mask([a, b], 48, 16, priority="dog,cat").ids.tolist() == [[1, 1, 0]]
    assert regions_to_group_mask([a, b], 48, 16, priority="cat,dog").ids.tolist() == [[1, 0, 0]]
    policy = GroupPolicy(priority="cat").first("dog", "cat")
    assert policy.priority == ("dog", "cat") and GroupPolicy(priority=None).priority == ()


def test_group_policy_is_one_checked_value():
    policy = GroupPolicy(block_size=32, classes="person, car", coverage=0.5)
    assert policy.classes == ("person", "car") and hash(policy) == hash(policy.replace())
    assert regions_to_group_mask([], 64, 64, policy).block_size == 32
    assert regions_to_group_mask([], 64, 64, policy, block_size=64).block_size == 64
    with pytest.raises(SsicError, match="coverage"):
        policy.replace(coverage=2.0)
    with pytest.raises(TypeError):
        build_group_mask(np.zeros((16, 16, 3), np.uint8), detector="none", colour="red", log=None)
