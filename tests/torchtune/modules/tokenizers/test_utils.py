import pytest

from tests.test_utils.tokenizer_fixtures import TIKTOKEN_PATTERN, write_tiktoken_bpe
from torchtune.data import Message
from torchtune.modules.transforms.tokenizers import TikTokenBaseTokenizer, tokenize_messages_no_special_tokens

BOS, EOS = 1000, 1001


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = write_tiktoken_bpe(tmp_path_factory.mktemp("tt"), num_merges=150)
    return TikTokenBaseTokenizer(str(path), name="tiny", pattern=TIKTOKEN_PATTERN, bos_id=BOS, eos_id=EOS,
                                 special_tokens={"<|bos|>": BOS, "<|eos|>": EOS})


def enc(tokenizer, text):
    return tokenizer.encode(text, add_bos=False, add_eos=False)


def test_turns_tokenize_like_their_joined_text(tokenizer):
    messages = [
        Message("system", "You are brief. ", masked=True),
        Message("user", "Question: what is the capital of Italy? ", masked=True),
        Message("assistant", "Rome."),
        Message("user", "And of Spain?\n", masked=True),
        Message("assistant", "Madrid is the capital."),
    ]
    tokens, mask = tokenize_messages_no_special_tokens(tokenizer, messages, bos_id=BOS, eos_id=EOS)
    turn1 = enc(tokenizer, "You are brief. Question: what is the capital of Italy? Rome.")
    turn2 = enc(tokenizer, "And of Spain?\nMadrid is the capital.")
    assert tokens == [BOS] + turn1 + [EOS] + [BOS] + turn2 + [EOS]

    # Trained positions: exactly the assistant replies (with the moved space) and their EOS.
    rome = enc(tokenizer, " Rome.")
    madrid = enc(tokenizer, "Madrid is the capital.")
    trained = [t for t, m in zip(tokens, mask) if not m]
    assert trained == rome + [EOS] + madrid + [EOS]
    assert mask[0] is True and mask[len(turn1) + 1] is False  # BOS masked, first EOS trained


def test_no_end_tokens_for_generation_prompt(tokenizer):
    messages = [Message("user", "Hi ", masked=True), Message("assistant", "Hello", eot=False)]
    tokens, mask = tokenize_messages_no_special_tokens(tokenizer, messages, bos_id=BOS, eos_id=EOS,
                                                       add_end_tokens=False)
    assert tokens == [BOS] + enc(tokenizer, "Hi Hello")
    assert len(mask) == len(tokens)


def test_assistant_without_eot_continues_the_turn(tokenizer):
    messages = [Message("assistant", "Let me check.", eot=False), Message("ipython", " result 42", masked=True),
                Message("assistant", " Done.")]
    tokens, _ = tokenize_messages_no_special_tokens(tokenizer, messages, bos_id=BOS, eos_id=EOS)
    assert tokens == [BOS] + enc(tokenizer, "Let me check. result 42 Done.") + [EOS]


def test_no_special_ids(tokenizer):
    tokens, mask = tokenize_messages_no_special_tokens(tokenizer, [Message("user", "hi"), Message("assistant", "yo")])
    assert tokens == enc(tokenizer, "hi") + enc(tokenizer, "yo") and mask == [False] * len(tokens)


def test_media_is_rejected(tokenizer):
    message = Message("user", [{"type": "image", "content": object()}, {"type": "text", "content": "what?"}])
    with pytest.raises(ValueError, match="contains media"):
        tokenize_messages_no_special_tokens(tokenizer, [message])


def test_parse_hf_tokenizer_json(tmp_path):
    from tests.test_utils.tokenizer_fixtures import write_hf_tokenizer
    from torchtune.modules.transforms.tokenizers import parse_hf_tokenizer_json

    tokenizer_json, _ = write_hf_tokenizer(tmp_path)
    assert parse_hf_tokenizer_json(str(tokenizer_json)) == {"<s>": 0, "</s>": 1, "<pad>": 2}
    with pytest.raises(FileNotFoundError, match="nope.json"):
        parse_hf_tokenizer_json(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {}}')
    with pytest.raises(ValueError, match="added_tokens"):
        parse_hf_tokenizer_json(str(bad))
