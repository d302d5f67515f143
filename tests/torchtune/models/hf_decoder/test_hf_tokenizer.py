"""``hf_tokenizer``: a checkpoint's tokenizer.json and chat template, against transformers."""

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats, write_hf_tokenizer
from torchtune.data import Message
from torchtune.models._hf_decoder import hf_tokenizer

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


@pytest.fixture(scope="module", params=["chatml", "llama3"])
def folders(request, tmp_path_factory):
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp(request.param)
    tokenizer_json, _ = write_hf_tokenizer(folder)
    specials = ["<|im_start|>", "<|im_end|>"] if request.param == "chatml" else [
        "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    reference = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", additional_special_tokens=specials)
    reference.chat_template = CHATML if request.param == "chatml" else LLAMA3
    saved = folder / "saved"
    reference.save_pretrained(str(saved))
    return reference, hf_tokenizer(str(saved))


def _messages(chat):
    return [Message(role=m["role"], content=m["content"], masked=m["role"] != "assistant") for m in chat]


def test_training_ids_equal_apply_chat_template_and_only_replies_are_trained(folders):
    reference, ours = folders
    for chat in random_chats(30, seed=3):
        tokens, mask = ours.tokenize_messages(_messages(chat))
        assert tokens == reference.apply_chat_template(chat, tokenize=True, return_dict=False)
        # The trained tokens are exactly the replies' rendered turns.
        trained = reference.decode([t for t, m in zip(tokens, mask) if not m], skip_special_tokens=False)
        replies = [m for m in chat if m["role"] == "assistant"]
        rendered = [reference.apply_chat_template(chat[:chat.index(m) + 1], tokenize=False)[
            len(reference.apply_chat_template(chat[:chat.index(m)], tokenize=False)) if chat.index(m) else 0:]
            for m in replies]
        assert trained == "".join(rendered)


def test_generation_prompt_equals_add_generation_prompt(folders):
    reference, ours = folders
    for chat in random_chats(10, seed=4):
        prompt = chat[:-1]  # ends with a user message
        tokens, mask = ours.tokenize_messages(_messages(prompt), add_eos=False)
        assert tokens == reference.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                       return_dict=False)
        prefix = reference.apply_chat_template(prompt, tokenize=True, return_dict=False)
        assert tokens[:len(prefix)] == prefix and all(mask[len(prefix):])  # the generation prompt is not trained


def test_truncation_and_special_ids(folders):
    reference, ours = folders
    assert ours.eos_id == reference.eos_token_id and ours.pad_id == reference.pad_token_id
    assert ours.bos_id == reference.bos_token_id
    ours.max_seq_len = 12
    try:
        tokens, mask = ours.tokenize_messages(_messages(random_chats(1)[0]))
    finally:
        ours.max_seq_len = None
    assert len(tokens) == len(mask) == 12 and tokens[-1] == ours.eos_id
