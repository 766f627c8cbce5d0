"""Token bytes to text: split characters and stop strings across tokens."""

from __future__ import annotations

from backends.llamacpp.text import StopTextAssembler


def feed_all(assembler: StopTextAssembler, pieces: list[bytes]) -> str:
    return "".join(assembler.feed(p) for p in pieces) + assembler.flush()


def test_a_character_split_across_tokens_is_sent_whole() -> None:
    snowman = "☃".encode()
    assembler = StopTextAssembler(())
    assert assembler.feed(snowman[:1]) == ""
    assert assembler.feed(snowman[1:]) == "☃"


def test_stop_string_across_tokens_is_cut_and_never_sent() -> None:
    assembler = StopTextAssembler(["END"])
    sent = [assembler.feed(p) for p in [b"abc E", b"N", b"D tail"]]
    assert "".join(sent) == "abc "
    assert assembler.stopped
    assert assembler.flush() == ""


def test_a_false_start_of_a_stop_string_is_released() -> None:
    assembler = StopTextAssembler(["END"])
    assert assembler.feed(b"xE") == "x"
    assert assembler.feed(b"Nd") == "ENd"
    assert not assembler.stopped
    assert feed_all(StopTextAssembler(["END"]), [b"E", b"N"]) == "EN"


def test_the_earliest_of_several_stops_wins() -> None:
    assert feed_all(StopTextAssembler(["cd", "b"]), [b"abcd"]) == "a"
