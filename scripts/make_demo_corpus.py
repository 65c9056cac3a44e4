#!/usr/bin/env python
"""The project's own small headline corpus, in the Rush et al. (2015) Gigaword format.

    python scripts/make_demo_corpus.py OUT_DIR [--n-train 6000] [--n-valid 300] [--n-test 300] [--seed 1]

Writes OUT_DIR/{train,valid,test}.{src,tgt}: one news sentence a line in .src, its headline in .tgt;
lowercased, tokenized (punctuation and 's split off), every digit written ``#``, rare names as ``UNK``.
Deterministic (fixed seed), no network, no external data.

Each pair comes from one of several templates; the headline is a compressive rewrite of the sentence:
names, places and numbers are copied, the date, the attribution and the side clauses are deleted, and
verbs change form (said -> says, will raise -> to raise, fell -> fall), a capital stands for its country.
Most templates have two headline styles drawn at random, so part of each headline cannot be predicted
from the source (the scores stay below 100 and the valid loss stays above its floor). Valid and test pairs
are drawn from the same distribution but never repeat a training source line.
"""
import argparse
import random
import sys
from pathlib import Path

COUNTRIES = [  # (country, adjective, capital)
    ("china", "chinese", "beijing"), ("japan", "japanese", "tokyo"), ("france", "french", "paris"),
    ("germany", "german", "berlin"), ("russia", "russian", "moscow"), ("india", "indian", "new delhi"),
    ("brazil", "brazilian", "brasilia"), ("egypt", "egyptian", "cairo"), ("kenya", "kenyan", "nairobi"),
    ("mexico", "mexican", "mexico city"), ("turkey", "turkish", "ankara"), ("spain", "spanish", "madrid"),
    ("italy", "italian", "rome"), ("iran", "iranian", "tehran"), ("pakistan", "pakistani", "islamabad"),
    ("nigeria", "nigerian", "abuja"), ("canada", "canadian", "ottawa"), ("peru", "peruvian", "lima"),
    ("poland", "polish", "warsaw"), ("vietnam", "vietnamese", "hanoi"), ("britain", "british", "london"),
    ("australia", "australian", "canberra"), ("argentina", "argentine", "buenos aires"),
    ("indonesia", "indonesian", "jakarta"), ("thailand", "thai", "bangkok"), ("greece", "greek", "athens"),
]
FIRST = ["john", "maria", "ahmed", "li", "anna", "carlos", "yuki", "olga", "david", "fatima", "peter",
         "elena", "hassan", "mei", "james", "sofia", "ivan", "amina", "paul", "laura", "kofi", "nina"]
LAST = ["smith", "garcia", "khan", "wang", "petrov", "silva", "tanaka", "mueller", "rossi", "novak",
        "mendez", "okafor", "brown", "kim", "dubois", "costa", "ivanov", "sato", "jones", "lopez"]
ROLES = ["foreign minister", "finance minister", "prime minister", "president", "defense minister",
         "trade minister", "opposition leader", "central bank chief"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
POLICY = [  # (base verb, object)
    ("raise", "taxes"), ("cut", "interest rates"), ("increase", "military spending"), ("reduce", "fuel prices"),
    ("expand", "oil production"), ("boost", "exports"), ("lower", "import tariffs"), ("cut", "public debt"),
    ("double", "rice imports"), ("raise", "the minimum wage"), ("reduce", "carbon emissions"),
    ("increase", "aid to farmers"),
]
SOURCES = ["a government statement", "state media", "the official news agency", "a ministry spokesman",
           "diplomats", "local newspapers"]
COMPANIES = ["general motors", "siemens", "toyota", "nokia", "shell", "boeing", "sony", "nestle",
             "samsung", "fiat", "unilever", "airbus", "philips", "renault", "hitachi", "pfizer"]
RESULTS = [("better-than-expected", "profit"), ("record", "sales"), ("weak", "earnings"),
           ("disappointing", "revenue"), ("strong", "earnings"), ("lower", "profit")]
VEHICLES = [("bus", "plunged into a river"), ("train", "derailed"), ("ferry", "capsized"),
            ("truck", "overturned"), ("plane", "crashed"), ("minibus", "collided with a truck")]
CLUBS = ["real madrid", "ajax", "celtic", "porto", "benfica", "juventus", "arsenal", "lyon", "galatasaray",
         "bayern munich", "inter milan", "boca juniors", "chelsea", "marseille", "feyenoord", "river plate"]
COMPETITIONS = ["the champions league", "the league", "a cup quarterfinal", "a friendly match"]
ORGS = ["the world bank", "the united nations", "the european union", "the african union", "parliament",
        "the imf", "the cabinet", "the senate"]
PROJECTS = [("build", "a new airport"), ("rebuild", "schools"), ("fund", "a dam"), ("modernize", "the railways"),
            ("repair", "roads"), ("build", "housing"), ("fight", "malaria"), ("clean up", "the river")]
TOPICS = ["trade", "energy", "security", "economic", "military", "cultural"]
RARE_RATE = 0.06  # share of person names replaced by UNK, as the release does for rare words


def digits(n):
    """A number of ``n`` digits in the release's convention: every digit is ``#``."""
    return "#" * n


def person(rng):
    if rng.random() < RARE_RATE:
        return "UNK", "UNK"
    first, last = rng.choice(FIRST), rng.choice(LAST)
    if rng.random() < RARE_RATE:
        last = "UNK"
    return f"{first} {last}", last


def t_policy(rng):
    country, adj, _ = rng.choice(COUNTRIES)
    name, _ = person(rng)
    role = rng.choice(ROLES)
    verb, obj = rng.choice(POLICY)
    pct = digits(rng.choice([1, 2]))
    src = (f"{adj} {role} {name} said on {rng.choice(DAYS)} that {country} will {verb} {obj} by "
           f"{pct} percent in #### , according to {rng.choice(SOURCES)} .")
    tgt = rng.choice([f"{name} says {country} to {verb} {obj}", f"{country} to {verb} {obj} by {pct} percent"])
    return src, tgt


def t_shares(rng):
    company = rng.choice(COMPANIES)
    up = rng.random() < 0.5
    adjective, what = rng.choice(RESULTS)
    pct = digits(rng.choice([1, 2]))
    src = (f"shares in {company} {'rose' if up else 'fell'} {pct} percent on "
           f"{rng.choice(DAYS)} after the company reported {adjective} {what} for the "
           f"{rng.choice(['first', 'second', 'third', 'fourth'])} quarter .")
    tgt = rng.choice([f"{company} shares {'rise' if up else 'fall'} on {adjective} {what}",
                      f"{company} shares {'up' if up else 'down'} {pct} percent"])
    return src, tgt


def t_accident(rng):
    country, _, capital = rng.choice(COUNTRIES)
    vehicle, event = rng.choice(VEHICLES)
    killed = digits(rng.choice([1, 2]))
    place = rng.choice([country, capital])
    src = (f"at least {killed} people were killed and {digits(rng.choice([1, 2, 3]))} injured when a "
           f"{vehicle} {event} in {place} on {rng.choice(DAYS)} , police said .")
    tgt = rng.choice([f"{killed} killed in {place} {vehicle} accident",
                      f"{vehicle} accident kills {killed} in {country}"])
    return src, tgt


def t_match(rng):
    a, b = rng.sample(CLUBS, 2)
    scorer, _ = person(rng)
    src = (f"{a} beat {b} #-# in {rng.choice(COMPETITIONS)} on {rng.choice(DAYS)} , with {scorer} "
           f"scoring twice in the second half .")
    tgt = rng.choice([f"{a} beat {b} #-#", f"{scorer} double gives {a} win over {b}"])
    return src, tgt


def t_project(rng):
    org = rng.choice(ORGS)
    verb, obj = rng.choice(PROJECTS)
    country, _, _ = rng.choice(COUNTRIES)
    amount = digits(rng.choice([2, 3]))
    src = (f"{org} on {rng.choice(DAYS)} approved a {amount} million dollar plan to {verb} {obj} in "
           f"{country} , officials said .")
    tgt = f"{org.replace('the ', '', 1)} approves plan to {verb} {obj} in {country}"
    return src, tgt


def t_visit(rng):
    (country, adj, _), (host, _, capital) = rng.sample(COUNTRIES, 2)
    name, _ = person(rng)
    topic = rng.choice(TOPICS)
    src = (f"{adj} president {name} arrived in {capital} on {rng.choice(DAYS)} for a {digits(1)}-day "
           f"visit aimed at boosting {topic} ties with {host} .")
    tgt = rng.choice([f"{adj} president arrives in {host} for {topic} talks",
                      f"{name} in {capital} to boost {topic} ties"])
    return src, tgt


def t_arrest(rng):
    country, adj, capital = rng.choice(COUNTRIES)
    name, last = person(rng)
    crime = rng.choice(["corruption", "fraud", "tax evasion", "spying", "smuggling"])
    src = (f"police in {capital} arrested former {rng.choice(ROLES)} {name} on {rng.choice(DAYS)} on "
           f"charges of {crime} , a spokesman for the {adj} interior ministry said .")
    tgt = f"{country} arrests ex-official {last} for {crime}"
    return src, tgt


TEMPLATES = [t_policy, t_shares, t_accident, t_match, t_project, t_visit, t_arrest]


def generate(n_train, n_valid, n_test, seed=1):
    """Deterministic corpus: {split: ([src lines], [tgt lines])}; no source line in two splits."""
    rng = random.Random(seed)
    seen = set()
    out = {}
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        src, tgt = [], []
        tries = 0
        while len(src) < n:
            tries += 1
            if tries > 100 * n + 1000:
                raise RuntimeError(f"cannot draw {n} distinct {split} pairs")
            s, t = rng.choice(TEMPLATES)(rng)
            if s in seen:
                continue
            seen.add(s)
            src.append(s)
            tgt.append(t)
        out[split] = (src, tgt)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-valid", type=int, default=300)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, (src, tgt) in generate(a.n_train, a.n_valid, a.n_test, a.seed).items():
        for side, lines in (("src", src), ("tgt", tgt)):
            tmp = out / f".{split}.{side}.tmp"
            tmp.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
            tmp.replace(out / f"{split}.{side}")
        print(f"[demo corpus] {split}: {len(src)} pairs -> {out}/{split}.src/.tgt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
