import pytest
import sentencepiece as spm

from tests.test_utils.tokenizer_fixtures import train_sentencepiece
from torchtune.data import ChatMLTemplate, Message, PromptTemplate
from torchtune.models.llama2 import Llama2ChatTemplate, Llama2Tokenizer, llama2_tokenizer

BOS, EOS = 1, 2


@pytest.fixture(scope="module")
def sp_path(tmp_path_factory):
    return train_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="module")
def sp(sp_path):
    return spm.SentencePieceProcessor(model_file=str(sp_path))


def conversation(train_on_input=False):
    masked = not train_on_input
    return [
        Message("system", "You are a helpful assistant.", masked=True),
        Message("user", "What is the capital of France?", masked=masked),
        Message("assistant", "The capital of France is Paris."),
        Message("user", "And of Japan?", masked=masked),
        Message("assistant", "Tokyo."),
    ]


def meta_reference(sp):
    """Meta's Llama2 chat format: each turn encoded as one string between BOS and EOS, with the
    space Meta's reference puts after the answer (``f"{B_INST} {prompt} {E_INST} {answer} "``)."""
    turn1 = "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nWhat is the capital of France? [/INST] " \
            "The capital of France is Paris. "
    turn2 = "[INST] And of Japan? [/INST] Tokyo. "
    return [BOS] + sp.encode(turn1) + [EOS] + [BOS] + sp.encode(turn2) + [EOS]


def test_chat_tokens_match_meta_format(sp_path, sp):
    tok = llama2_tokenizer(str(sp_path))  # Llama2ChatTemplate by default
    tokens, mask = tok.tokenize_messages(conversation())
    assert tokens == meta_reference(sp)
    assert len(mask) == len(tokens)


def test_only_assistant_tokens_are_trained(sp_path, sp):
    tok = llama2_tokenizer(str(sp_path))
    tokens, mask = tok.tokenize_messages(conversation())
    trained = [t for t, m in zip(tokens, mask) if not m]
    # Assistant replies follow "[/INST] ", so they carry the word-initial space ("▁The").
    expected = sp.encode(" The capital of France is Paris. ", add_bos=False)[1:] + [EOS] \
        + sp.encode(" Tokyo. ")[1:] + [EOS]
    assert sp.decode(trained) == "The capital of France is Paris.  Tokyo. "
    assert trained == expected


def test_train_on_input_trains_everything_but_system(sp_path, sp):
    tok = llama2_tokenizer(str(sp_path))
    tokens, mask = tok.tokenize_messages(conversation(train_on_input=True))
    assert tokens == meta_reference(sp)
    # BOS and the system block are masked; the rest, from the user's question on, is trained.
    system_block = sp.encode("[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n")
    assert mask == [True] * (1 + len(system_block)) + [False] * (len(tokens) - 1 - len(system_block))


def test_no_template(sp_path, sp):
    tok = llama2_tokenizer(str(sp_path), prompt_template=None)
    messages = [Message("user", "hello there ", masked=True), Message("assistant", "general kenobi")]
    tokens, mask = tok.tokenize_messages(messages)
    assert tokens == [BOS] + sp.encode("hello there general kenobi") + [EOS]
    assert mask[-1] is False and mask[0] is True


@pytest.mark.parametrize("template", [
    "torchtune.data.ChatMLTemplate",
    {"system": ["<|im_start|>system\n", "<|im_end|>\n"], "user": ["<|im_start|>user\n", "<|im_end|>\n"],
     "assistant": ["<|im_start|>assistant\n", "<|im_end|>\n"], "tool": ["<|im_start|>tool\n", "<|im_end|>\n"],
     "ipython": ["<|im_start|>tool\n", "<|im_end|>\n"]},
    ChatMLTemplate(),
])
def test_prompt_template_forms(sp_path, template):
    tok = llama2_tokenizer(str(sp_path), prompt_template=template)
    assert tok.prompt_template.template == ChatMLTemplate().template
    text = tok.decode(tok.tokenize_messages(conversation())[0])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")


def test_default_template_is_llama2_chat(sp_path):
    assert isinstance(llama2_tokenizer(str(sp_path)).prompt_template, Llama2ChatTemplate)


def test_bad_template(sp_path):
    with pytest.raises(ValueError, match="prompt_template"):
        llama2_tokenizer(str(sp_path), prompt_template=42)
    with pytest.raises(ValueError, match="unknown role 'robot'"):
        llama2_tokenizer(str(sp_path), prompt_template={"robot": ["a", "b"]})


def test_truncation_keeps_eos(sp_path):
    full, _ = llama2_tokenizer(str(sp_path)).tokenize_messages(conversation())
    tok = llama2_tokenizer(str(sp_path), max_seq_len=20)
    tokens, mask = tok.tokenize_messages(conversation())
    assert tokens == full[:19] + [EOS] and len(mask) == 20
    tokens, _ = tok.tokenize_messages(conversation(), add_end_tokens=False)
    assert tokens[-1] != EOS and len(tokens) == 20
    left = llama2_tokenizer(str(sp_path), max_seq_len=20, truncation_type="left")
    assert left.tokenize_messages(conversation())[0] == full[-20:]


def test_call_adds_tokens_and_mask(sp_path):
    tok = llama2_tokenizer(str(sp_path))
    sample = {"messages": conversation(), "id": 7}
    out = tok(sample)
    assert out["id"] == 7 and "messages" not in out and "messages" in sample
    assert (out["tokens"], out["mask"]) == tok.tokenize_messages(conversation())
    prompt = tok({"messages": conversation()[:2]}, inference=True)
    assert prompt["tokens"][-1] != EOS
    assert tok.decode(prompt["tokens"]).endswith("What is the capital of France? [/INST]")


def test_encode_decode_round_trip(sp_path):
    tok = llama2_tokenizer(str(sp_path))
    text = "Round trip: ünïcödé, 😀, tabs\tand\nnewlines."
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("hi")[0] == tok.bos_id and tok.encode("hi")[-1] == tok.eos_id


def test_properties(sp_path, sp):
    tok = llama2_tokenizer(str(sp_path), max_seq_len=64)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size, tok.max_seq_len) == (1, 2, 0, sp.vocab_size(), 64)
    assert tok.special_tokens == {"<s>": 1, "</s>": 2}
    assert isinstance(tok, Llama2Tokenizer)


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.model"):
        llama2_tokenizer(str(tmp_path / "missing.model"))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x00\x01junk")
    with pytest.raises(ValueError, match="junk.model is not a valid SentencePiece model"):
        llama2_tokenizer(str(junk))


def test_custom_prompt_template_instance(sp_path, sp):
    template = PromptTemplate({"user": ["Q: ", "\nA: "]})
    tok = llama2_tokenizer(str(sp_path), prompt_template=template)
    tokens, _ = tok.tokenize_messages([Message("user", "two?", masked=True), Message("assistant", "2")])
    assert tokens == [BOS] + sp.encode("Q: two?\nA: 2") + [EOS]


def test_class_defaults_to_the_llama2_chat_template_and_can_drop_start_tokens(sp_path, sp):
    tok = Llama2Tokenizer(str(sp_path))
    assert isinstance(tok.prompt_template, Llama2ChatTemplate)
    tokens, _ = tok.tokenize_messages(conversation())
    assert tokens == meta_reference(sp)
    no_bos, _ = tok.tokenize_messages(conversation(), add_start_tokens=False)
    assert no_bos == [t for t in meta_reference(sp) if t != BOS]
    assert Llama2Tokenizer(str(sp_path), prompt_template=None).prompt_template is None


def test_sentencepiece_encode_prefix_and_decode_ids(sp_path, sp):
    from torchtune.modules.transforms.tokenizers import SentencePieceBaseTokenizer

    base = SentencePieceBaseTokenizer(str(sp_path))
    continued = base.encode("Paris", add_bos=False, add_eos=False, trim_leading_whitespace=True)
    with_prefix = base.encode("Paris", add_bos=False, add_eos=False, trim_leading_whitespace=True, prefix="\n\n")
    # The same continuation, found through another prefix: the ids of "\n\nParis" minus those of "\n\n".
    assert with_prefix == continued == sp.encode("\n\nParis")[len(sp.encode("\n\n")):]
    assert base.encode("Paris", add_bos=False, add_eos=False, prefix="\n\n") == sp.encode("Paris")  # unused
    assert base.decode(ids=sp.encode("Paris")) == "Paris"
