from fersr_stream.pipeline.summary import _line
from fersr_stream.words import counted


def test_one_is_singular_every_other_count_plural():
    assert [counted(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]
    assert _line(1, 1, 1) == "1 frame, 1 face, 1 track"  # a run on one picture
