"""Instruction-tuning data: (prompt, response) pairs -> chat-formatted tokens with the loss on the
response only, plus left-padded prompts for measuring accuracy by generation."""

from __future__ import annotations

import random

import torch
from datasets import Dataset, DatasetDict

from src.train.data import SPLITS

IGNORE = -100  # label value the loss skips (prompt and padding tokens)


# --- pairs -> splits ------------------------------------------------------------------------
def split_pairs(
    pairs: list[tuple[str, str]], val_size: int, test_size: int, seed: int
) -> DatasetDict:
    """Seeded random splits of (prompt, response) pairs."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    cuts = {
        "test": order[:test_size],
        "validation": order[test_size : test_size + val_size],
        "train": order[test_size + val_size :],
    }
    return DatasetDict(
        {
            name: Dataset.from_dict(
                {
                    "prompt": [pairs[i][0] for i in idx],
                    "response": [pairs[i][1] for i in idx],
                    "label": [-1] * len(idx),
                }
            )
            for name, idx in cuts.items()
        }
    )


def instructions_from_labels(
    splits: DatasetDict, instruction: str, labels: list[str]
) -> DatasetDict:
    """Classification rows -> instructions whose answer is the label word."""

    def convert(batch):
        return {
            "prompt": [instruction.format(text=t) for t in batch["text"]],
            "response": [labels[y] for y in batch["label"]],
            "label": batch["label"],
        }

    return DatasetDict(
        {k: v.map(convert, batched=True, remove_columns=v.column_names) for k, v in splits.items()}
    )


# --- tokenization ----------------------------------------------------------------------------
def render(tokenizer, prompt: str, response: str | None) -> list[int]:
    """Token ids of the chat-formatted prompt (+ response). Tokenizers without a chat template
    get a plain instruction layout so tiny test models work too."""
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": prompt}]
        if response is None:
            return list(
                tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
        messages.append({"role": "assistant", "content": response})
        return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
    text = f"### Instruction:\n{prompt}\n### Response:\n"
    if response is not None:
        text += response + (tokenizer.eos_token or tokenizer.sep_token or "")
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> dict:
    """input_ids for prompt+response, labels masked to the response, prompt ids for generation."""
    prompt_ids = render(tokenizer, prompt, None)
    full_ids = render(tokenizer, prompt, response)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("chat template renders the prompt differently with and without a reply")
    response_ids = full_ids[len(prompt_ids) :]
    # Truncate the prompt, never the answer: the loss and the accuracy both live there.
    keep = max(1, max_length - len(response_ids))
    prompt_ids = prompt_ids[-keep:]
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels, "prompt_ids": prompt_ids}


def tokenize_sft(splits: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    def encode(row):
        return encode_example(tokenizer, row["prompt"], row["response"], max_length)

    return DatasetDict(
        {k: splits[k].map(encode, remove_columns=["prompt", "response"]) for k in SPLITS}
    )


class SFTCollator:
    """Right-pads inputs/labels for the loss; left-pads prompts so generation continues them."""

    def __init__(self, pad_token_id: int, pad_to: int | None = None):
        self.pad, self.pad_to = pad_token_id, pad_to  # pad_to: static width (pad_to_max_length)

    def __call__(self, rows: list[dict]) -> dict:
        return {
            **self._pad(
                [r["input_ids"] for r in rows], self.pad, "input_ids", left=False, width=self.pad_to
            ),
            "labels": self._pad(
                [r["labels"] for r in rows], IGNORE, "x", left=False, width=self.pad_to
            )["x"],
            **{
                f"prompt_{k}": v
                for k, v in self._pad(
                    [r["prompt_ids"] for r in rows], self.pad, "input_ids", left=True
                ).items()
            },
            "class_ids": torch.tensor([r["label"] for r in rows]),
        }

    @staticmethod
    def _pad(seqs, value: int, key: str, left: bool, width: int | None = None) -> dict:
        width = max(width or 0, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), width), value, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, seq in enumerate(seqs):
            span = slice(width - len(seq), width) if left else slice(0, len(seq))
            ids[i, span] = torch.as_tensor(seq, dtype=torch.long)
            mask[i, span] = 1
        return {key: ids, "attention_mask": mask}
