"""Assembly of demo reasoning rows: the family table per domain, DeepSeek-R1-style thinking traces, formal
ground-truth solutions, concise solutions, and `reasoning_rows`."""
from __future__ import annotations

import random
import re

from reasoning_sae.data.demo._common import DOMAINS, SOURCE, _P, _cap
from reasoning_sae.data.demo.math_code import (_c_digits, _c_fizz, _c_long, _c_reverse, _c_second, _c_vowels,
                                               _m_area, _m_gcd, _m_linear, _m_percent, _m_primes, _m_series,
                                               _m_shop)
from reasoning_sae.data.demo.puzzles_science import (_b_cells, _b_dihybrid, _b_hardy, _b_mono, _h_dilute,
                                                     _h_molar, _h_ph, _y_fall, _y_kin, _y_ohm, _y_power,
                                                     _z_ages, _z_handshake, _z_knights, _z_order, _z_river)

FAMILIES = {"math": (_m_shop, _m_linear, _m_percent, _m_series, _m_gcd, _m_primes, _m_area),
             "code": (_c_reverse, _c_vowels, _c_fizz, _c_digits, _c_second, _c_long),
             "puzzle": (_z_ages, _z_knights, _z_handshake, _z_river, _z_order),
             "physics": (_y_kin, _y_ohm, _y_fall, _y_power), "chemistry": (_h_molar, _h_dilute, _h_ph),
             "biology": (_b_mono, _b_dihybrid, _b_cells, _b_hardy)}

_OPEN = ("Okay, so I need to {t}.", "Alright, let's see. I need to {t}.", "First, I should understand what's "
         "asked: I need to {t}.", "Okay, let me try to {t}.", "Alright, so the task is to {t}.",
         "Okay, let's tackle this. I have to {t}.")
_SETUP = ("Let me start by writing down what's given.", "Let me think about how to set this up.",
          "Hmm, this looks manageable, but let me go step by step.", "Let me read the question again carefully.",
          "I'll start with the basics and build from there.", "Let me make sure I understand the setup first.")
_RESTATE = ("The problem says: {q}", "So the question is: {q}", "Let me restate it. {q}")
_FIRST = ("First,", "So", "Okay, so", "Let's see,", "Well,", "")
_CONN = ("Then", "Next,", "Now", "So", "That means", "And", "")
_TENT = ("Maybe I should write out each step so I don't lose track.", "Maybe I'm overcomplicating this.",
         "Perhaps there's a shortcut, but the direct way seems safest.", "Perhaps I should list what I know first.",
         "Maybe a sanity check at the end will help.", "Perhaps the numbers were chosen so this comes out cleanly.",
         "Maybe there's a neater way, but let me keep going.")
_OBJ = ("But I should double-check that I copied the numbers correctly. Yes, they match.",
        "But is that really what the question asks? Reading it again, yes, it is.",
        "But wait, did I miss a condition? No, I think that covers everything.",
        "But that seems almost too easy. Let me make sure nothing is hidden in the wording.",
        "But I shouldn't rush. One careless step would spoil the rest.")
_CAV = ("However, I need to be careful with the details here.", "However, I should keep exact values until the end.",
        "However, I should make sure I'm not mixing up the two quantities.",
        "However, it's easy to slip here, so I'll go slowly.", "However, I still want to confirm this another way.")
_HMM = ("Hmm, let me check that.", "Hmm, is that right? Let me recompute.", "Wait, let me verify that step.",
        "Hmm, let me check that again.", "Let me recompute that to be sure.")
_HMM_ONLY = ("Hmm, does that make sense? Yes, it does.", "Hmm, let me think about whether that's right. Yes.",
             "Let me think about that for a second. Okay, that seems fine.", "Hmm, wait. Is that right? Yes, it is.")
_OK = ("Yes, that's right.", "Okay, that holds.", "Good.", "That checks out.", "Right.", "Yes.")
_NO = ("Wait, no,", "Wait, no —", "Hmm, no,", "Wait, that's wrong:", "No wait,")
_ALT = ("Alternatively, I could {a}.", "Alternatively, let me {a}.", "Another way to see it: I can {a}.",
        "Let me try a different approach to confirm. Maybe I can {a}.", "Alternatively, maybe I can {a}.")
_SAME = ("That gives {a} again.", "Same result, {a}.", "That also gives {a}.", "So {a} either way.")
_CHK = ("Another check: {c}.", "Let me verify: {c}.", "Let me double-check: {c}.", "As a sanity check, {c}.")
_RECAP = ("So, putting it together: {s}.", "Let me recap: {s}.", "To summarize what I have: {s}.")
_REREAD = ("Wait, let me make sure I answered the right question. I was asked to {t}, and that's what I did.",
           "Hmm, let me reread the question once more: I need to {t}. Yes, that matches what I computed.",
           "Before I finish, let me think about whether I missed anything. The goal was to {t}, and I covered it.")
_END = ("Therefore, the answer is {a}.", "So the answer is {a}.", "So I'm fairly confident the answer is {a}.",
        "Therefore, the final answer should be {a}.", "I think that's it. The answer is {a}.")
_EQ = re.compile(r"[\w.()√²^/−]+(?: [×+−/] [\w.()√²^/−]+)* [=≈] [^,;:]*$")


def _recheck(r: random.Random, step: str) -> str:
    m = _EQ.search(step)
    frag = m.group(0) if m and m.group(0).count("(") == m.group(0).count(")") else ""
    if not frag:
        return r.choice(_HMM_ONLY)
    return f"{r.choice(_HMM)} {frag}. {r.choice(_OK)}"


def opening(r: random.Random, task: str, question: str, restate: bool = True) -> str:
    """A trace's first paragraph: "Okay, so I need to {task}.", maybe the question restated, a set-up remark."""
    first = [r.choice(_OPEN).format(t=task)]
    first += [r.choice(_RESTATE).format(q=question)] * (r.random() < .5 and restate)
    first += [r.choice(_SETUP)] * (r.random() < .7) + [r.choice(_TENT)] * (r.random() < .5)
    return " ".join(first)


def _trace(p: _P, r: random.Random) -> str:
    first = [opening(r, p.task, p.text.split("\n")[0], restate=not p.code)]
    home = [j for j, s in enumerate(p.steps) if p.slip[0].split(" = ")[0] in s] or [r.randrange(len(p.steps))]
    work, slip_at = [], home[0] if r.random() < .7 else -1
    for j, s in enumerate(p.steps):
        if j == slip_at:
            slip = f"{p.slip[0]}. {r.choice(_NO)} {p.slip[1]}."
            work.append(_cap(f"{r.choice(_CONN if work else _FIRST)} {slip}".strip()))
        work.append(_cap(f"{r.choice(_CONN if work else _FIRST)} {s}.".strip()))
        if r.random() < .35:
            work.append(_recheck(r, s))
    for pool in (_OBJ, _CAV, _TENT):
        if r.random() < .4:
            work.insert(r.randint(1, len(work)), r.choice(pool))
    cut = r.randint(2, len(work)) if len(work) > 3 and r.random() < .6 else len(work)
    paras = [" ".join(first), " ".join(work[:cut]), " ".join(work[cut:])]
    if p.alt and r.random() < .7:
        same = "" if p.code else " " + r.choice(_SAME).format(a=p.answer)
        paras.append(r.choice(_ALT).format(a=p.alt) + same)
    if p.check and r.random() < .7:
        paras.append(f"{r.choice(_CHK).format(c=p.check)} {r.choice(_OK)}")
    if r.random() < .4:
        paras.append(r.choice(_RECAP).format(s=p.steps[-1]))
    if r.random() < .4:
        paras.append(r.choice(_REREAD).format(t=p.task))
    if p.code:
        paras.append(f"So the code would be:\n\n{p.code}\nThat handles the cases I thought about.")
    else:
        paras.append(r.choice(_END).format(a=p.answer))
    return "\n\n".join(x for x in paras if x)


def _ground_truth(p: _P, r: random.Random) -> str:
    head, style = r.choice(("**Solution.**", "Solution:", "We proceed step by step.", "We solve directly.")), r.random()
    if style < 1 / 3:
        body = "\n".join(f"{i}. {_cap(s)}." for i, s in enumerate(p.steps, 1))
    elif style < 2 / 3:
        body = "\n\n".join(f"**Step {i}.** {_cap(s)}." for i, s in enumerate(p.steps, 1))
    else:
        conn = ["First,"] + [r.choice(("Next,", "Then", "Further,")) for _ in p.steps[2:]] + ["Hence"]
        body = " ".join(_cap(f"{c} {s}.") for c, s in zip(conn, p.steps))
    if p.code:
        return f"{head}\n\n{body}\n\n```python\n{p.code}```\n\nThe function returns the required value for every valid input."
    tail = r.choice(("Hence the answer is $\\boxed{{{a}}}$.", "The answer is $\\boxed{{{a}}}$.",
                     "**Answer:** $\\boxed{{{a}}}$"))
    return f"{head}\n\n{body}\n\n{tail.format(a=p.answer)}"


def _solution(p: _P, r: random.Random) -> str:
    lines = "\n".join(f"{i}. {_cap(s)}." for i, s in enumerate(p.steps[-2:], 1))
    if p.code:
        return f"To {p.task}:\n\n{lines}\n\n{p.answer}"
    return f"{r.choice(('To', 'In order to'))} {p.task}:\n\n{lines}\n\n**Final Answer**\n\\boxed{{{p.answer}}}"


def reasoning_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows in the OpenThoughts-114k `metadata` schema: keys problem, deepseek_reasoning, deepseek_solution,
    ground_truth_solution, domain, source ("reasoning_sae.demo"), test_cases, starter_code."""
    rows = []
    for i in range(n):
        r, domain = random.Random(f"{seed}:reasoning:{i}"), DOMAINS[i % len(DOMAINS)]
        p = r.choice(FAMILIES[domain])(r)
        rows.append({"problem": p.text if p.code else f"Return your final response within \\boxed{{}}. {p.text}",
                     "deepseek_reasoning": _trace(p, r), "deepseek_solution": _solution(p, r),
                     "ground_truth_solution": _ground_truth(p, r), "domain": domain, "source": SOURCE,
                     "test_cases": p.tests, "starter_code": p.starter})
    return rows
