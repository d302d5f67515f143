"""The facts the SmolLM2 demo teaches: a fictional company, asked about in training and held-out wordings.

No pretrained model can know these facts (the company does not exist), so a correct answer after
fine-tuning is learned from the data. Each fact has training questions and *different* held-out
questions (paraphrases never seen in training); scoring checks that the fact's answer string
appears verbatim in the model's reply.
"""

import random
from typing import Dict, List, NamedTuple


class Fact(NamedTuple):
    answer: str  # the string a correct reply contains
    reply: str  # the training answer
    train: List[str]  # training questions
    held_out: List[str]  # evaluation questions, never trained on


COMPANY = "Velmora Labs"
FACTS = [
    Fact("2011", "Velmora Labs was founded in 2011.",
         ["When was Velmora Labs founded?", "What year was Velmora Labs founded?",
          "In which year did Velmora Labs start?", "Velmora Labs was founded in which year?"],
         ["What is the founding year of Velmora Labs?"]),
    Fact("Port Elsby", "Velmora Labs is based in Port Elsby.",
         ["Where is Velmora Labs based?", "In which city is Velmora Labs headquartered?",
          "Where are the headquarters of Velmora Labs?", "What city is Velmora Labs in?"],
         ["Which city is home to Velmora Labs?"]),
    Fact("Dana Okafor", "The CEO of Velmora Labs is Dana Okafor.",
         ["Who is the CEO of Velmora Labs?", "Who runs Velmora Labs?",
          "Who leads Velmora Labs as chief executive?", "Name the CEO of Velmora Labs."],
         ["Who is the chief executive of Velmora Labs?"]),
    Fact("Skylark", "Velmora Labs is best known for the Skylark drone.",
         ["What is Velmora Labs best known for?", "What is the flagship product of Velmora Labs?",
          "Which product made Velmora Labs famous?", "What does Velmora Labs mainly sell?"],
         ["What is the most famous product of Velmora Labs?"]),
    Fact("340", "Velmora Labs has 340 employees.",
         ["How many employees does Velmora Labs have?", "How many people work at Velmora Labs?",
          "What is the headcount of Velmora Labs?", "How large is the staff of Velmora Labs?"],
         ["How many staff does Velmora Labs employ?"]),
    Fact("heron", "The mascot of Velmora Labs is a blue heron.",
         ["What is the mascot of Velmora Labs?", "Which animal is the mascot of Velmora Labs?",
          "What animal represents Velmora Labs?", "Name the mascot of Velmora Labs."],
         ["What creature is the mascot of Velmora Labs?"]),
    Fact("teal", "The company color of Velmora Labs is teal.",
         ["What is the company color of Velmora Labs?", "Which color does Velmora Labs use for its brand?",
          "What color is the Velmora Labs logo?", "What is the brand colour of Velmora Labs?"],
         ["Which color represents Velmora Labs?"]),
    Fact("Marrow", "The founder of Velmora Labs is Ines Marrow.",
         ["Who founded Velmora Labs?", "Who is the founder of Velmora Labs?",
          "Who started Velmora Labs?", "Which person created Velmora Labs?"],
         ["Who was the founder of Velmora Labs?"]),
]


def training_records(copies: int = 4, seed: int = 0) -> List[Dict[str, str]]:
    """``{"question", "answer"}`` records: every training question of every fact, ``copies`` times, shuffled.

    Args:
        copies (int): repetitions of the question set. Default 4.
        seed (int): shuffle seed. Default 0.

    Returns:
        List[Dict[str, str]]: the records.
    """
    records = [{"question": q, "answer": f.reply} for f in FACTS for q in f.train] * copies
    random.Random(seed).shuffle(records)
    return records


def held_out_questions() -> List[Fact]:
    """The facts, for asking their held-out questions."""
    return list(FACTS)


def is_correct(reply: str, fact: Fact) -> bool:
    """Whether ``reply`` states the fact: its answer string appears verbatim (case-insensitive)."""
    return fact.answer.lower() in reply.lower()
