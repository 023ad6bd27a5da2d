"""Procedural shapes: the grammar round-trips and rendered images match their labels."""

import numpy as np
import pytest

from cotj.models import shapes


def _rgb(name: str, table: dict) -> np.ndarray:
    return np.array(table[name], dtype=np.float32) / 127.5 - 1.0


def test_grammar_round_trips_every_prompt():
    prompts = shapes.all_prompts()
    assert len(prompts) == len(set(prompts)) == 3888
    for p in prompts:
        stated = shapes.parse_prompt(p)
        assert shapes.prompt_of(np.maximum(stated, 0), stated >= 0) == p


def test_prompt_text_states_the_attributes():
    labels = np.array([0, 2, 1, 1, 0, 1])  # red triangle, count index 1 = two, large, left, gray
    mentioned = np.array([True, True, True, True, True, True])
    assert shapes.prompt_of(labels, mentioned) == "two large red triangles on the left, gray background"
    mentioned[3:] = False
    assert shapes.prompt_of(labels, mentioned) == "two red triangles"
    np.testing.assert_array_equal(shapes.parse_prompt("a blue circle at the top"), [2, 0, 0, -1, 2, -1])


@pytest.mark.parametrize(
    "bad", ["two red circle", "a red circles", "a pink circle", "a red star", "a red circle, mauve background"]
)
def test_parse_rejects_prompts_outside_the_grammar(bad):
    with pytest.raises(ValueError, match="prompt"):
        shapes.parse_prompt(bad)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("two red circls on the left", "unknown word 'circls' (closest known words: circles, circle)"),
        ("a red star", "unknown word 'star' (closest known words: square)"),
        ("Two red circles", "unknown word 'Two' (the grammar is lower case: 'two')"),
        ("a pink circle", "unknown word 'pink' where the grammar expects a colour (red, green, blue, yellow, purple, "
                          "cyan) or a size (small, large)"),
        ("a red circle, mauve background", "unknown word 'mauve' where the grammar expects a background (black, "
                                           "gray, white) after the comma"),
        ("two red circle", "expected the plural after 'two' (circles, squares, triangles), got 'circle'"),
        ("a red circles", "expected a shape (circle, square, triangle), got 'circles'"),
        ("red two circles", "expected a count (a, two, three) first, got 'red'"),
        ("a red circle, white", "expected 'background', got the end of the prompt"),
        ("a red circle,white background", "write it as 'a red circle, white background'"),
    ],
)
def test_parse_error_names_the_word_that_does_not_fit(bad, said):
    with pytest.raises(ValueError) as info:
        shapes.parse_prompt(bad)
    message = str(info.value)
    assert message == f"prompt {bad!r} is not in the shapes grammar: {said}"
    assert "\n" not in message and "COUNT" not in message  # one line, not the whole grammar


def test_parse_error_cuts_a_long_prompt():
    with pytest.raises(ValueError) as info:
        shapes.parse_prompt("a red circle " + "x" * 5000)
    message = str(info.value)
    assert "5,013 characters" in message and "5,000 characters" in message  # the prompt and the word, both cut
    assert "x" * 100 not in message


def test_parse_rejects_what_is_not_text():
    with pytest.raises(TypeError, match="prompt must be a str"):
        shapes.parse_prompt(3)  # type: ignore[arg-type]


def test_scenes_from_prompts_keep_stated_attributes():
    rng = np.random.default_rng(0)
    prompts = ["three small green squares", "a yellow triangle in the center, white background"]
    scenes = shapes.scenes_from_prompts(rng, prompts)
    np.testing.assert_array_equal(scenes.labels[0, :4], [1, 1, 2, 0])
    np.testing.assert_array_equal(scenes.labels[1, [0, 1, 2, 4, 5]], [3, 2, 0, 4, 2])
    assert scenes.prompts() == prompts


def test_rendered_pixels_have_the_object_and_background_colours():
    rng = np.random.default_rng(1)
    scenes = shapes.sample_scenes(rng, 64)
    images = shapes.render(scenes, rng, resolution=24)
    assert images.shape == (64, 3, 24, 24) and images.dtype == np.float32
    for img, (colour, _, _, _, _, background) in zip(images, scenes.labels):
        pixels = img.reshape(3, -1).T
        obj = _rgb(list(shapes.COLOURS)[colour], shapes.COLOURS)
        back = _rgb(list(shapes.BACKGROUNDS)[background], shapes.BACKGROUNDS)
        pure_obj = np.all(np.abs(pixels - obj) < 1e-5, axis=1)
        pure_back = np.all(np.abs(pixels - back) < 1e-5, axis=1)
        assert pure_obj.sum() >= 2 and pure_back.sum() > 0.5 * len(pixels)
        # every other pixel is an anti-aliased blend of the two colours
        blend = ~(pure_obj | pure_back)
        w = (pixels[blend] - back) @ (obj - back) / ((obj - back) @ (obj - back))
        np.testing.assert_allclose(pixels[blend], back + w[:, None] * (obj - back), atol=1e-5)


def _coverage(scenes: shapes.Scenes, rng: np.random.Generator) -> np.ndarray:
    """Object coverage (B, H, W) in [0, 1] recovered from the rendered colours."""
    images = shapes.render(scenes, rng, resolution=24)
    colours = np.array(list(shapes.COLOURS.values()), np.float32)[scenes.column("colour")] / 127.5 - 1
    backs = np.array(list(shapes.BACKGROUNDS.values()), np.float32)[scenes.column("background")] / 127.5 - 1
    diff = (colours - backs)[:, :, None, None]
    return ((images - backs[:, :, None, None]) * diff).sum(1) / (diff**2).sum(1)


def test_count_size_and_position_are_rendered():
    rng = np.random.default_rng(2)
    scenes = shapes.sample_scenes(rng, 300)
    cover = _coverage(scenes, rng)
    area = cover.sum(axis=(1, 2))
    count, size, position = scenes.column("count") + 1, scenes.column("size"), scenes.column("position")
    # area grows with the count and the size
    per_object = area / count
    assert per_object[size == 1].min() > per_object[size == 0].max() * 0.95
    for s in (0, 1):
        means = [area[(size == s) & (count == c)].mean() for c in (1, 2, 3)]
        assert means[0] < means[1] < means[2]
    # the centroid lies in the named region (y grows downwards)
    yy, xx = np.mgrid[0:24, 0:24] / 24.0
    cx = (cover * xx).sum(axis=(1, 2)) / area
    cy = (cover * yy).sum(axis=(1, 2)) / area
    assert np.all(cx[position == 0] < 0.45) and np.all(cx[position == 1] > 0.55)
    assert np.all(cy[position == 2] < 0.45) and np.all(cy[position == 3] > 0.55)
    assert np.all(np.abs(cx[position == 4] - 0.5) < 0.2) and np.all(np.abs(cy[position == 4] - 0.5) < 0.2)


def test_shapes_differ_in_how_they_fill_their_bounding_box():
    rng = np.random.default_rng(3)
    scenes = shapes.Scenes(
        np.array([[0, s, 0, 1, 4, 0] for s in range(3)] * 20), np.ones((60, 6), dtype=bool)
    )
    cover = _coverage(scenes, rng) > 0.5
    rows, cols = cover.any(axis=2).sum(1), cover.any(axis=1).sum(1)
    fill = cover.sum(axis=(1, 2)) / (rows * cols)
    by_shape = [fill[scenes.column("shape") == s] for s in range(3)]  # circle ~ pi/4, square ~ 1, triangle ~ 1/2
    assert by_shape[1].min() > by_shape[0].max() > by_shape[0].min() > by_shape[2].max()


def test_rendering_is_seeded():
    a = shapes.render(shapes.sample_scenes(np.random.default_rng(5), 8), np.random.default_rng(6))
    b = shapes.render(shapes.sample_scenes(np.random.default_rng(5), 8), np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n must"):
        shapes.sample_scenes(rng, 0)
    with pytest.raises(ValueError, match="p_mention"):
        shapes.sample_scenes(rng, 2, p_mention=1.5)
    with pytest.raises(ValueError, match="resolution"):
        shapes.render(shapes.sample_scenes(rng, 1), rng, resolution=4)
    with pytest.raises(ValueError, match="attribute"):
        shapes.sample_scenes(rng, 1).column("texture")
