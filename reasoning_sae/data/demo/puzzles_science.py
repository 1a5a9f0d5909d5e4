"""Puzzle, physics, chemistry and biology problem families of the demo reasoning corpus (`_z_*`, `_y_*`, `_h_*`,
`_b_*`); each maps a seeded `random.Random` to a `_P` whose answer is computed in Python."""
from __future__ import annotations

import itertools
import math
import random
import re
from fractions import Fraction

from reasoning_sae.data.demo._common import _NAMES, _P, _cap, _f, _slip


def _z_ages(r: random.Random) -> _P:
    (a, b), x, k, n = r.sample(_NAMES, 2), r.randint(3, 20), r.randint(2, 5), r.randint(2, 12)
    s, times, now = (k + 1) * x + 2 * n, "twice" if k == 2 else f"{k} times", (k + 1) * x
    return _P(f"{a} is {times} as old as {b}. In {n} years, the sum of their ages will be {s}. How old is {b} now?",
              f"find {b}'s current age",
              [f"let {b}'s age be x, so {a} is {k}x",
               f"in {n} years the ages are x + {n} and {k}x + {n}, so {k + 1}x + {2 * n} = {s}",
               f"{k + 1}x = {s} − {2 * n} = {now}", f"x = {now}/{k + 1} = {x}"],
              str(x), _slip(r, f"{s} − {2 * n}", now),
              f"take today's total, {s} − 2 × {n} = {now}, and give {b} one share of {k + 1}: {now}/{k + 1} = {x}",
              f"{b} is {x} and {a} is {k * x}; in {n} years that makes {x + n} + {k * x + n} = {s}")


_KK = (("{t} is a knave", lambda w, s, t: not w[t]), ("{t} is a knight", lambda w, s, t: w[t]),
       ("{t} and I are both knights", lambda w, s, t: w[s] and w[t]),
       ("at least one of {t} and I is a knave", lambda w, s, t: not (w[s] and w[t])),
       ("{t} and I are the same kind", lambda w, s, t: w[s] == w[t]),
       ("{t} and I are different kinds", lambda w, s, t: w[s] != w[t]))


def _z_knights(r: random.Random) -> _P:
    k = r.choice((2, 3))
    names, kind = r.sample(_NAMES, k), ("knave", "knight")
    desc = lambda w: ", ".join(f"{names[i]} is a {kind[v]}" for i, v in enumerate(w))
    worlds = list(itertools.product((True, False), repeat=k))
    while True:
        st = [(s, r.choice([j for j in range(k) if j != s]), r.choice(_KK)) for s in range(k)]
        ok = [w for w in worlds if all(f(w, s, t) == w[s] for s, t, (_, f) in st)]
        if len(ok) == 1:
            break
    steps, bad = [], []
    for w in worlds:
        fail = next(((s, f(w, s, t)) for s, t, (_, f) in st if f(w, s, t) != w[s]), None)
        if fail is None:
            steps.append(f"if {desc(w)}, every statement fits its speaker")
            continue
        bad.append((w, f"{names[fail[0]]}'s statement would be {('false', 'true')[fail[1]]}, which a "
                       f"{kind[w[fail[0]]]} cannot say"))
        steps.append(f"if {desc(w)}, {bad[-1][1]}")
    says = " ".join(f"{names[s]} says: \"{_cap(tpl.format(t=names[t]))}.\"" for s, t, (tpl, _) in st)
    return _P(f"On an island, knights always tell the truth and knaves always lie. You meet {', '.join(names)}. "
              f"{says} Who is a knight and who is a knave?", "work out who is a knight and who is a knave",
              steps, desc(ok[0]), (f"it works if {desc(bad[0][0])}", f"then {bad[0][1]}"),
              f"start from {names[-1]}'s statement and reason backwards, which leads to the same single case",
              f"with {desc(ok[0])}, each knight's statement is true and each knave's is false")


def _z_handshake(r: random.Random) -> _P:
    n, place = r.randint(5, 40), r.choice(("at a party", "at a conference", "at a team meeting", "at a reunion"))
    t = n * (n - 1) // 2
    return _P(f"{n} people {place} each shake hands exactly once with every other person. "
              "How many handshakes take place?", f"count the handshakes among {n} people",
              [f"each of the {n} people shakes {n - 1} hands",
               f"that counts every handshake twice, so the total is {n} × {n - 1} / 2 = {t}"],
              str(t), _slip(r, f"{n} × {n - 1}", n * (n - 1)),
              f"add the new handshakes as people arrive one at a time: 0 + 1 + … + {n - 1} = {t}",
              f"this is the binomial coefficient C({n}, 2) = {t}")


def _z_river(r: random.Random) -> _P:
    n, who = r.randint(2, 12), r.choice(("soldiers", "hikers", "adults", "farmers"))
    return _P(f"{n} {who} must cross a river. Two children have a small boat that holds either one of the {who} or "
              f"up to two children. What is the minimum number of crossings needed to get all {who} across, with "
              "the children finishing on the far bank as well?",
              f"find the minimum number of crossings for {n} {who} and two children",
              [f"moving one of the {who} takes 4 crossings: both children cross, one returns, the {who[:-1]} "
               "crosses, the other child returns",
               f"the children are back where they started, so the cycle repeats: 4 × {n} = {4 * n} crossings",
               f"one last crossing takes both children over, for {4 * n} + 1 = {4 * n + 1}"],
              str(4 * n + 1), (f"each of the {who} needs 3 crossings, so 3 × {n} + 1 = {3 * n + 1}",
                               "each needs 4, since a child has to bring the boat back after the crossing"),
              f"count by direction: {2 * n + 1} trips go forward and {2 * n} come back, and {2 * n + 1} + {2 * n} "
              f"= {4 * n + 1}", "with a single person the formula gives 5, which matches a count by hand")


def _z_order(r: random.Random) -> _P:
    k = r.randint(4, 5)
    names = r.sample(_NAMES, k)
    more, less, most = r.choice((("taller", "shorter", "tallest"), ("older", "younger", "oldest"),
                                 ("faster", "slower", "fastest")))
    pairs = [(names[i], names[i + 1]) for i in range(k - 1)]
    r.shuffle(pairs)
    clues = " ".join(f"{x} is {more} than {y}." if r.random() < .5 else f"{y} is {less} than {x}." for x, y in pairs)
    pos, chain = r.randrange(k), " > ".join(names)
    nth = ("", "second ", "third ", "fourth ", "fifth ")[pos]
    return _P(f"{clues} Who is the {nth}{most}?", f"find the {nth}{most} person",
              [f"each clue links two people, and chaining them gives the order {chain}",
               f"the {most} is {names[0]}, since nobody is {more} than {names[0]}",
               f"position {pos + 1} in the chain is {names[pos]}"],
              names[pos], (f"{names[1]} is the {most}", f"{names[0]} is {more} than {names[1]}"),
              f"count how many people each one beats: {names[pos]} beats {k - 1 - pos}, which is position {pos + 1}",
              f"every clue agrees with the order {chain}")


def _y_kin(r: random.Random) -> _P:
    u, a, t, obj = r.randint(0, 20), r.randint(1, 6), r.randint(2, 12), r.choice(("car", "cyclist", "train", "bus"))
    v, half = u + a * t, 0.5 * a * t * t
    s, start = u * t + half, "starting from rest" if u == 0 else f"moving at {u} m/s"
    return _P(f"A {obj} {start} accelerates uniformly at {a} m/s² for {t} s. How far does it travel in that time, "
              "in meters?", f"find how far the {obj} travels while accelerating",
              [f"the final speed is v = u + at = {u} + {a} × {t} = {v} m/s",
               f"the distance is s = ut + ½at² = {u * t} + ½ × {a} × {t}² = {u * t} + {_f(half)} = {_f(s)} m"],
              _f(s), _slip(r, f"½ × {a} × {t}²", half),
              f"use the average speed: ({u} + {v})/2 × {t} = {_f((u + v) / 2)} × {t} = {_f(s)} m",
              f"v² = u² + 2as gives {v * v} = {u * u} + 2 × {a} × {_f(s)}")


def _y_ohm(r: random.Random) -> _P:
    v, r1, r2, par = r.choice((3, 6, 9, 12, 24, 48)), r.randint(2, 60), r.randint(2, 60), r.random() < .5
    tot = r1 * r2 / (r1 + r2) if par else r1 + r2
    i, how = v / tot, "in parallel" if par else "in series"
    first = (f"in parallel, 1/R = 1/{r1} + 1/{r2}, so R = {r1} × {r2} / ({r1} + {r2}) = {_f(tot)} Ω" if par
             else f"in series the resistances add: R = {r1} + {r2} = {tot} Ω")
    alt = (f"add the branch currents: {v}/{r1} + {v}/{r2} ≈ {_f(v / r1)} + {_f(v / r2)} ≈ {_f(i)} A" if par
           else f"write {v} = I × {r1} + I × {r2} and solve: I = {v}/{r1 + r2} ≈ {_f(i)} A")
    return _P(f"Resistors of {r1} Ω and {r2} Ω are connected {how} to a {v} V battery. What current, in amperes, "
              "does the battery supply?", f"find the battery current for {r1} Ω and {r2} Ω {how}",
              [first, f"Ohm's law gives I = V/R = {v}/{_f(tot)} ≈ {_f(i)} A"], _f(i),
              _slip(r, f"{r1} + {r2}", r1 + r2), alt, f"I × R = {_f(i)} × {_f(tot)} ≈ {v} V")


def _y_fall(r: random.Random) -> _P:
    h = r.randint(5, 200)
    t, vel = math.sqrt(2 * h / 9.8), math.sqrt(2 * 9.8 * h)
    obj, spot = r.choice(("stone", "ball", "wrench", "apple")), r.choice(("bridge", "cliff", "rooftop", "balcony"))
    return _P(f"A {obj} is dropped from a {spot} {h} m above the ground. Ignoring air resistance and taking "
              "g = 9.8 m/s², how long does it take to hit the ground, in seconds?", f"find the fall time from {h} m",
              ["from h = ½gt², t = √(2h/g)", f"2h/g = 2 × {h}/9.8 = {2 * h}/9.8 ≈ {_f(2 * h / 9.8)}",
               f"t ≈ {_f(t)} s"],
              _f(t), _slip(r, f"2 × {h}", 2 * h),
              f"find the impact speed first: v = √(2 × 9.8 × {h}) ≈ {_f(vel)} m/s, then t = v/g ≈ {_f(t)} s",
              f"½ × 9.8 × {_f(t)}² ≈ {_f(4.9 * round(t, 2) ** 2)} m, close to {h} m")


def _y_power(r: random.Random) -> _P:
    f, d, t = r.randrange(20, 500, 10), r.randint(2, 50), r.randint(2, 60)
    w = f * d
    return _P(f"A worker pushes a crate with a constant force of {f} N over {d} m in {t} s. What average power, "
              "in watts, is delivered?", f"find the average power when {f} N acts over {d} m in {t} s",
              [f"the work is W = F × d = {f} × {d} = {w} J", f"the power is P = W/t = {w}/{t} ≈ {_f(w / t)} W"],
              _f(w / t), _slip(r, f"{f} × {d}", w),
              f"use P = F × v with the average speed {d}/{t} ≈ {_f(d / t, 3)} m/s, which gives ≈ {_f(w / t)} W",
              f"{_f(w / t)} W × {t} s ≈ {w} J")


_MASS = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "Na": 22.99, "Cl": 35.45, "S": 32.06, "Ca": 40.078,
         "K": 39.098, "Mg": 24.305}
_COMPOUNDS = (("water", "H2O"), ("carbon dioxide", "CO2"), ("sodium chloride", "NaCl"), ("glucose", "C6H12O6"),
              ("sulfuric acid", "H2SO4"), ("ammonia", "NH3"), ("calcium carbonate", "CaCO3"), ("methane", "CH4"),
              ("ethanol", "C2H5OH"), ("sodium hydroxide", "NaOH"), ("potassium chloride", "KCl"),
              ("magnesium oxide", "MgO"), ("nitric acid", "HNO3"), ("magnesium chloride", "MgCl2"))


def _h_molar(r: random.Random) -> _P:
    name, formula = r.choice(_COMPOUNDS)
    atoms: dict[str, int] = {}
    for el, c in re.findall(r"([A-Z][a-z]?)(\d*)", formula):
        atoms[el] = atoms.get(el, 0) + int(c or 1)
    m, mol = round(sum(_MASS[e] * c for e, c in atoms.items()), 2), r.choice((0.25, 0.5, 1.5, 2, 2.5, 3, 4, 5))
    parts = " + ".join(f"{c} × {_MASS[e]}" for e, c in atoms.items())
    el, cnt = max(atoms.items(), key=lambda kv: kv[1])
    return _P(f"What is the mass, in grams, of {_f(mol)} mol of {name} ({formula})?",
              f"find the mass of {_f(mol)} mol of {formula}",
              [f"the molar mass of {formula} is {parts} = {_f(m)} g/mol",
               f"the mass is {_f(mol)} mol × {_f(m)} g/mol = {_f(mol * m)} g"],
              _f(mol * m), _slip(r, f"{cnt} × {_MASS[el]}", cnt * _MASS[el]),
              f"find the moles of each element, e.g. {_f(mol * cnt)} mol of {el}, weigh each and add; the total is "
              f"again {_f(mol * m)} g", f"{_f(mol * m)} g ÷ {_f(m)} g/mol = {_f(mol)} mol")


def _h_dilute(r: random.Random) -> _P:
    c1, v2 = r.choice((1, 2, 5, 6, 10, 12)), r.choice((100, 250, 500, 1000))
    c2 = r.choice([c for c in (0.1, 0.2, 0.25, 0.5, 1, 2, 3) if c < c1])
    v1, sol, n = c2 * v2 / c1, r.choice(("HCl", "NaOH", "NaCl", "H2SO4", "KNO3")), _f(c2 * v2 / 1000, 4)
    return _P(f"How many milliliters of a {c1} M {sol} stock solution are needed to prepare {v2} mL of "
              f"{_f(c2)} M {sol}?", f"find the stock volume needed to make {v2} mL of {_f(c2)} M {sol}",
              ["the moles of solute do not change on dilution, so C₁V₁ = C₂V₂",
               f"V₁ = C₂V₂/C₁ = {_f(c2)} × {v2}/{c1} = {_f(v1)} mL"],
              _f(v1), _slip(r, f"{_f(c2)} × {v2}", c2 * v2),
              f"count moles: the target holds {_f(c2)} × {v2 / 1000} L = {n} mol, and the stock has {c1} mol per "
              f"liter, so {n}/{c1} L = {_f(v1)} mL",
              f"diluting {_f(v1)} mL to {v2} mL is a factor of {_f(v2 / v1)}, and {c1}/{_f(v2 / v1)} = {_f(c2)} M")


def _h_ph(r: random.Random) -> _P:
    m, k, acid = r.randint(1, 9), r.randint(1, 4), r.choice(("HCl", "HNO3", "HBr", "HClO4"))
    c, ph = m * 10.0 ** -k, k - math.log10(m)
    return _P(f"What is the pH of a {c:g} M solution of {acid}?", f"find the pH of {c:g} M {acid}",
              [f"{acid} is a strong acid, so it dissociates completely and [H⁺] = {c:g} M",
               f"pH = −log₁₀({c:g}) ≈ {_f(ph)}"],
              _f(ph), (f"the pH is about {k + 1}", f"{c:g} is {m} × 10^−{k}, so the pH is between {k - 1} and {k}"),
              f"split the logarithm: pH = {k} − log₁₀({m}) = {k} − {_f(math.log10(m), 3)} ≈ {_f(ph)}",
              f"10^(−{_f(ph)}) is about {c:g}")


_TRAITS = (("P", "purple flowers", "white flowers", "pea plants"), ("T", "tall stems", "short stems", "pea plants"),
           ("R", "round seeds", "wrinkled seeds", "pea plants"), ("G", "green pods", "yellow pods", "pea plants"),
           ("B", "black fur", "brown fur", "mice"), ("W", "wire hair", "smooth hair", "terriers"))


def _p_rec(g: str) -> Fraction:
    return Fraction(sum(ch.islower() for ch in g), 2)


def _geno(r: random.Random, x: str) -> str:
    return r.choice((x * 2, x + x.lower(), x + x.lower(), x.lower() * 2))


def _b_mono(r: random.Random) -> _P:
    big, dom, rec, org = r.choice(_TRAITS)
    g1, g2, want_rec = _geno(r, big), _geno(r, big), r.random() < .5
    kids = ["".join(sorted(a + b)) for a in g1 for b in g2]
    phen, k, q = (rec if want_rec else dom), sum(g.islower() == want_rec for g in kids), _p_rec(g1) * _p_rec(g2)
    alt = f"multiply the chances of a recessive allele from each parent: {_p_rec(g1)} × {_p_rec(g2)} = {q}"
    return _P(f"In {org}, {big} ({dom}) is dominant over {big.lower()} ({rec}). A {g1} parent is crossed with a "
              f"{g2} parent. What fraction of the offspring is expected to have {phen}?",
              f"find the fraction of {g1} × {g2} offspring with {phen}",
              [f"the {g1} parent passes on {g1[0]} or {g1[1]}, and the {g2} parent passes on {g2[0]} or {g2[1]}",
               f"the four equally likely combinations are {', '.join(kids)}",
               f"{k} of the 4 show {phen}, so the fraction is {k}/4 = {Fraction(k, 4)}"],
              str(Fraction(k, 4)), (f"that's {k + 1 if k < 4 else k - 1} out of 4", f"counting again, it's {k}"),
              alt + ("" if want_rec else f", so the dominant fraction is 1 − {q} = {1 - q}"),
              f"the ratio of {dom} to {rec} is {4 - int(q * 4)}:{int(q * 4)}")


def _b_dihybrid(r: random.Random) -> _P:
    (a, da, ra, _), (b, db, rb, _) = r.sample(_TRAITS[:4], 2)
    ga, gb, wa, wb = [_geno(r, a), _geno(r, a)], [_geno(r, b), _geno(r, b)], r.random() < .3, r.random() < .3
    pa, pb = _p_rec(ga[0]) * _p_rec(ga[1]), _p_rec(gb[0]) * _p_rec(gb[1])
    pa, pb = (pa if wa else 1 - pa), (pb if wb else 1 - pb)
    fa, fb, ans, cross = ra if wa else da, rb if wb else db, pa * pb, f"{ga[0]}{gb[0]} × {ga[1]}{gb[1]}"
    return _P(f"In pea plants, {a} ({da}) is dominant over {a.lower()} ({ra}) and {b} ({db}) is dominant over "
              f"{b.lower()} ({rb}); the genes assort independently. For the cross {cross}, what fraction of "
              f"offspring will have {fa} and {fb}?", f"find the fraction of {cross} offspring with {fa} and {fb}",
              [f"for the first gene, {ga[0]} × {ga[1]} gives {fa} with probability {pa}",
               f"for the second gene, {gb[0]} × {gb[1]} gives {fb} with probability {pb}",
               f"the genes are independent, so the probabilities multiply: {pa} × {pb} = {ans}"],
              str(ans), (f"adding them gives {pa} + {pb} = {pa + pb}", "independent probabilities multiply"),
              f"count boxes in the 16-square Punnett grid: {ans * 16} of 16 show both traits, and {ans * 16}/16 "
              f"= {ans}", f"{ans} is no larger than either {pa} or {pb}")


def _b_cells(r: random.Random) -> _P:
    n0, m, k = r.choice((10, 20, 50, 100, 200, 500, 1000)), r.choice((15, 20, 30, 40, 60)), r.randint(3, 10)
    t, org = k * m, r.choice(("E. coli cells", "yeast cells", "bacteria"))
    span = f"{t // 60} hours" if t % 60 == 0 else f"{t} minutes"
    return _P(f"A culture starts with {n0} {org} that divide every {m} minutes. Assuming unlimited resources, how "
              f"many cells are there after {span}?", f"find the population after {span}",
              [f"{f'{span} is {t} minutes, and ' if t % 60 == 0 else ''}one doubling every {m} minutes gives "
               f"{t}/{m} = {k} doublings",
               f"the population becomes {n0} × 2^{k} = {n0} × {2 ** k} = {n0 * 2 ** k}"],
              str(n0 * 2 ** k), _slip(r, f"2^{k}", 2 ** k),
              f"double step by step: {' → '.join(str(n0 * 2 ** i) for i in range(k + 1))}",
              f"{n0 * 2 ** k}/{n0} = {2 ** k}, which is 2^{k}")


def _b_hardy(r: random.Random) -> _P:
    qi, n = r.randint(1, 6), r.randrange(200, 5000, 100)
    q, p = qi / 10, (10 - qi) / 10
    het, hom, aff = 2 * qi * (10 - qi) * n // 100, (10 - qi) ** 2 * n // 100, qi * qi * n // 100
    trait = r.choice(("white coat color", "attached earlobes", "a metabolic disorder", "short wings"))
    return _P(f"A population of {n} is in Hardy–Weinberg equilibrium, and {qi * qi}% of individuals show {trait}, a "
              "recessive trait. How many individuals are expected to be heterozygous carriers?",
              f"find the number of carriers among {n}",
              [f"q² = {_f(q * q)}, so q = {_f(q)}", f"p = 1 − {_f(q)} = {_f(p)}",
               f"the carrier frequency is 2pq = 2 × {_f(p)} × {_f(q)} = {_f(2 * p * q)}",
               f"{_f(2 * p * q)} × {n} = {het}"],
              str(het), _slip(r, f"2 × {_f(p)} × {_f(q)}", 2 * p * q),
              f"count the other genotypes first: p²N = {hom} and q²N = {aff}, so {n} − {hom} − {aff} = {het}",
              f"p² + 2pq + q² = {_f(p * p)} + {_f(2 * p * q)} + {_f(q * q)} = 1")
