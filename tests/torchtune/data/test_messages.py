import pytest

from torchtune.data import Message, validate_messages


def test_text_content_and_defaults():
    m = Message("user", "hello")
    assert m.content == [{"type": "text", "content": "hello"}]
    assert m.text_content == "hello"
    assert (m.masked, m.ipython, m.eot, m.contains_media) == (False, False, True, False)


def test_parts_and_media():
    image = object()
    m = Message("user", [{"type": "image", "content": image}, {"type": "text", "content": "what is it?"}])
    assert m.contains_media and m.get_media() == [image] and m.text_content == "what is it?"


def test_from_dict():
    m = Message.from_dict({"role": "assistant", "content": "hi", "masked": True, "eot": False})
    assert m == Message("assistant", "hi", masked=True, eot=False)
    assert m != Message("assistant", "hi")


def test_bad_role_and_content():
    with pytest.raises(ValueError, match="Unknown message role 'bot'"):
        Message("bot", "x")
    with pytest.raises(TypeError, match="string or a list of parts"):
        Message("user", 3)
    with pytest.raises(ValueError, match="content parts"):
        Message("user", [{"type": "audio", "content": b""}])


def test_validate_messages():
    validate_messages([Message("system", "s"), Message("user", "u"), Message("assistant", "a")])
    with pytest.raises(ValueError, match="at least one"):
        validate_messages([])
    with pytest.raises(ValueError, match="index 1"):
        validate_messages([Message("user", "u"), Message("system", "s")])
    with pytest.raises(ValueError, match="consecutive user"):
        validate_messages([Message("user", "u"), Message("user", "u2")])
