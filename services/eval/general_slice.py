"""The general-capability slice: small, verifiable tasks that show forgetting after fine-tuning.

No public benchmark can be downloaded here, so privtune writes its own slice: generated
arithmetic, reasoning, instruction-following and JSON tasks, and a curated list of
short facts. Every item carries a check a program can judge (see the suite contract in
suites.py), and :func:`answered_general_items` gives, for each item, an answer that
passes it, so the checks themselves are tested.

Items are deterministic for a seed, and each category is generated on its own, item by
item: the first ``n`` items of a category are the same whatever ``per_category`` is.

What the slice does not cover: knowledge beyond :data:`FACTS` (about a hundred facts;
more items than facts repeat facts in other wordings), multi-step maths, code, long-form
writing, languages other than English. Items name no people (names in answers would be
counted by the PII detector as leakage).
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable

GENERATOR_VERSION = "general-slice/1"
CATEGORIES = ("general/arithmetic", "general/factual", "general/reasoning", "general/instruction", "general/json")
_ID_PREFIX = {"general/arithmetic": "gen-arith", "general/factual": "gen-fact", "general/reasoning": "gen-reason",
              "general/instruction": "gen-instr", "general/json": "gen-json"}
MAX_PER_CATEGORY = 2000

Item = dict[str, Any]
Task = tuple[str, str | None, dict[str, Any], str]   # prompt, reference, check, an answer that passes

# (question, accepted answers; the first is the reference). Unambiguous, no people.
FACTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # capitals
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of Italy?", ("Rome", "Roma")),
    ("What is the capital of Spain?", ("Madrid",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the capital of Canada?", ("Ottawa",)),
    ("What is the capital of Australia?", ("Canberra",)),
    ("What is the capital of Egypt?", ("Cairo",)),
    ("What is the capital of Kenya?", ("Nairobi",)),
    ("What is the capital of Brazil?", ("Brasília", "Brasilia")),
    ("What is the capital of Argentina?", ("Buenos Aires",)),
    ("What is the capital of Mexico?", ("Mexico City", "Ciudad de México", "Ciudad de Mexico")),
    ("What is the capital of India?", ("New Delhi",)),
    ("What is the capital of China?", ("Beijing", "Peking")),
    ("What is the capital of Russia?", ("Moscow",)),
    ("What is the capital of Norway?", ("Oslo",)),
    ("What is the capital of Sweden?", ("Stockholm",)),
    ("What is the capital of Finland?", ("Helsinki",)),
    ("What is the capital of Denmark?", ("Copenhagen", "København")),
    ("What is the capital of Portugal?", ("Lisbon", "Lisboa")),
    ("What is the capital of Greece?", ("Athens",)),
    ("What is the capital of Poland?", ("Warsaw", "Warszawa")),
    ("What is the capital of Austria?", ("Vienna", "Wien")),
    ("What is the capital of Ireland?", ("Dublin",)),
    ("What is the capital of Turkey?", ("Ankara",)),
    ("What is the capital of South Korea?", ("Seoul",)),
    ("What is the capital of Thailand?", ("Bangkok",)),
    ("What is the capital of Vietnam?", ("Hanoi", "Ha Noi")),
    ("What is the capital of Peru?", ("Lima",)),
    ("What is the capital of Chile?", ("Santiago",)),
    ("What is the capital of Colombia?", ("Bogotá", "Bogota")),
    ("What is the capital of Hungary?", ("Budapest",)),
    ("What is the capital of the Czech Republic?", ("Prague", "Praha")),
    ("What is the capital of Iceland?", ("Reykjavik", "Reykjavík")),
    ("What is the capital of New Zealand?", ("Wellington",)),
    ("What is the capital of Cuba?", ("Havana", "La Habana")),
    ("What is the capital of Morocco?", ("Rabat",)),
    ("What is the capital of Nigeria?", ("Abuja",)),
    ("What is the capital of Ghana?", ("Accra",)),
    ("What is the capital of Belgium?", ("Brussels", "Bruxelles", "Brussel")),
    ("What is the capital of the Philippines?", ("Manila",)),
    ("What is the capital of Ethiopia?", ("Addis Ababa",)),
    ("What is the capital of Ukraine?", ("Kyiv", "Kiev")),
    # chemical symbols (asked from the symbol: the element's name is long enough to match safely)
    ("Which chemical element has the symbol Au?", ("gold",)),
    ("Which chemical element has the symbol Ag?", ("silver",)),
    ("Which chemical element has the symbol Na?", ("sodium",)),
    ("Which chemical element has the symbol K?", ("potassium",)),
    ("Which chemical element has the symbol Cu?", ("copper",)),
    ("Which chemical element has the symbol Hg?", ("mercury",)),
    ("Which chemical element has the symbol O?", ("oxygen",)),
    ("Which chemical element has the symbol H?", ("hydrogen",)),
    ("Which chemical element has the symbol He?", ("helium",)),
    ("Which chemical element has the symbol C?", ("carbon",)),
    ("Which chemical element has the symbol N?", ("nitrogen",)),
    ("Which chemical element has the symbol Zn?", ("zinc",)),
    ("Which chemical element has the symbol Ca?", ("calcium",)),
    ("Which chemical element has the symbol Cl?", ("chlorine",)),
    ("Which chemical element has the symbol Pt?", ("platinum",)),
    ("Which chemical element has the symbol Ne?", ("neon",)),
    # calendar order
    ("Which day of the week comes after Monday?", ("Tuesday",)),
    ("Which day of the week comes after Thursday?", ("Friday",)),
    ("Which day of the week comes before Sunday?", ("Saturday",)),
    ("What is the first month of the year?", ("January",)),
    ("What is the last month of the year?", ("December",)),
    ("Which month comes after March?", ("April",)),
    ("Which month comes before October?", ("September",)),
    ("Which month comes after July?", ("August",)),
    # units and counts
    ("How many centimetres are in one metre?", ("100", "hundred")),
    ("How many grams are in one kilogram?", ("1000", "1,000", "thousand")),
    ("How many minutes are in one hour?", ("60", "sixty")),
    ("How many hours are in one day?", ("24", "twenty-four", "twenty four")),
    ("How many days are in a leap year?", ("366",)),
    ("How many months are in a year?", ("12", "twelve")),
    ("How many days are in a week?", ("7", "seven")),
    ("How many sides does a hexagon have?", ("6", "six")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("How many degrees are in a right angle?", ("90", "ninety")),
    ("How many degrees are in a full circle?", ("360",)),
    ("At how many degrees Celsius does water boil at sea level?", ("100",)),
    ("At how many degrees Fahrenheit does water freeze at sea level?", ("32", "thirty-two")),
    ("How many legs does an insect have?", ("6", "six")),
    ("How many legs does a spider have?", ("8", "eight")),
    ("How many planets are in the solar system?", ("8", "eight")),
    ("How many bones are in the adult human body?", ("206",)),
    # science and the world
    ("What gas do plants take in from the air for photosynthesis?", ("carbon dioxide", "CO2")),
    ("What is the largest planet in the solar system?", ("Jupiter",)),
    ("Which planet is closest to the Sun?", ("Mercury",)),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("What is the chemical formula of water?", ("H2O", "H₂O")),
    ("Which gas makes up most of Earth's atmosphere?", ("nitrogen",)),
    ("What force pulls objects towards the Earth?", ("gravity", "gravitation")),
    ("Which organ pumps blood around the human body?", ("heart",)),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("What is the largest continent by area?", ("Asia",)),
    ("What is the tallest mountain on Earth above sea level?", ("Everest",)),
    ("What do bees make from flower nectar?", ("honey",)),
    ("What is the process of water vapour turning into liquid called?", ("condensation",)),
    ("What is the largest mammal on Earth?", ("blue whale",)),
    ("What colour do you get by mixing blue and yellow paint?", ("green",)),
    ("What colour do you get by mixing red and white paint?", ("pink",)),
    ("What colour do you get by mixing red and yellow paint?", ("orange",)),
    ("What is the currency of Japan?", ("yen",)),
    ("What is the currency of the United Kingdom?", ("pound", "sterling")),
    ("What is the official language of Brazil?", ("Portuguese",)),
    ("On which continent is Egypt?", ("Africa",)),
    ("On which continent is Peru?", ("South America",)),
    ("What is the plural of mouse?", ("mice",)),
    ("What is the past tense of the verb go?", ("went",)),
    ("What is the opposite of north?", ("south",)),
)
_FACT_WORDINGS = ("{q}", "Answer briefly: {q}", "Quick question: {q}", "{q} Reply in a few words.")

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_NONSENSE = ("blicket", "wug", "dax", "fep", "toma", "zorp", "kiki", "bouba", "glim", "snark", "plonk", "vash")
_SHAPES = ("box", "ball", "cube", "ring", "cone", "disc")
_COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
_TOPICS = ("the ocean", "coffee", "libraries", "bicycles", "the moon", "rain", "gardening", "trains", "winter",
           "music", "bread", "mountains", "rivers", "chess", "the desert", "clocks")
_WORDS = ("river", "ledger", "orbit", "maple", "signal", "copper", "harbor", "lantern", "meadow", "quartz",
          "falcon", "timber", "velvet", "summit", "canvas", "pepper", "glacier", "anchor", "bramble", "cobalt")
_GOODS = ("desk lamp", "water bottle", "notebook", "umbrella", "backpack", "coffee mug", "wall clock", "kettle")
_NUMBER_ONLY = " Reply with just the number."


# -- arithmetic ----------------------------------------------------------------------------------

def _sum(r: random.Random) -> Task:
    a, b = r.randint(10, 9999), r.randint(10, 9999)
    return f"What is {a} + {b}?{_NUMBER_ONLY}", str(a + b), {"type": "exact"}, str(a + b)


def _difference(r: random.Random) -> Task:
    a, b = sorted((r.randint(10, 9999), r.randint(10, 9999)), reverse=True)
    return f"What is {a} - {b}?{_NUMBER_ONLY}", str(a - b), {"type": "exact"}, str(a - b)


def _product(r: random.Random) -> Task:
    a, b = r.randint(2, 99), r.randint(2, 99)
    return f"What is {a} * {b}?{_NUMBER_ONLY}", str(a * b), {"type": "exact"}, str(a * b)


def _shop(r: random.Random) -> Task:
    a = r.randint(20, 500)
    b = r.randint(1, a - 1)
    prompt = f"A shop has {a} apples and sells {b} of them. How many apples are left?{_NUMBER_ONLY}"
    return prompt, str(a - b), {"type": "exact"}, f"{a - b} apples are left."


def _boxes(r: random.Random) -> Task:
    a, b = r.randint(2, 48), r.randint(2, 30)
    prompt = f"Each box holds {a} pens. How many pens are in {b} full boxes?{_NUMBER_ONLY}"
    return prompt, str(a * b), {"type": "exact"}, f"{a * b} pens."


def _savings(r: random.Random) -> Task:
    a, b = r.randint(5, 900), r.randint(5, 900)
    prompt = f"A jar holds {a} coins and {b} more coins are added. How many coins are in the jar now?{_NUMBER_ONLY}"
    return prompt, str(a + b), {"type": "exact"}, str(a + b)


def _groups(r: random.Random) -> Task:
    size, groups = r.randint(2, 25), r.randint(2, 12)
    prompt = (f"{size * groups} chairs are set out in {groups} equal rows. How many chairs are in each row?"
              f"{_NUMBER_ONLY}")
    return prompt, str(size), {"type": "exact"}, str(size)


# -- factual -------------------------------------------------------------------------------------

def _factual_tasks(n: int, r: random.Random) -> list[Task]:
    """Every fact once (seeded order), then again in other wordings."""
    out: list[Task] = []
    cycle = 0
    while len(out) < n:
        order = list(range(len(FACTS)))
        r.shuffle(order)
        for i in order[: n - len(out)]:
            question, accepted = FACTS[i]
            prompt = _FACT_WORDINGS[cycle % len(_FACT_WORDINGS)].format(q=question)
            out.append((prompt, accepted[0], {"type": "contains_any", "values": list(accepted)},
                        f"The answer is {accepted[0]}."))
        cycle += 1
    return out


# -- reasoning -----------------------------------------------------------------------------------

def _larger(r: random.Random) -> Task:
    a, b = r.sample(range(10, 10_000), 2)
    return f"Which is larger, {a} or {b}?{_NUMBER_ONLY}", str(max(a, b)), {"type": "exact"}, str(max(a, b))


def _next_in_sequence(r: random.Random) -> Task:
    start = r.randint(1, 30)
    if r.random() < 0.5:
        step = r.randint(2, 12)
        seq = [start + step * i for i in range(5)]
    else:
        factor = r.randint(2, 3)
        seq = [start * factor ** i for i in range(5)]
    shown, answer = seq[:4], seq[4]
    prompt = f"What number comes next in the sequence {', '.join(map(str, shown))}, ...?{_NUMBER_ONLY}"
    return prompt, str(answer), {"type": "exact"}, str(answer)


def _syllogism(r: random.Random) -> Task:
    a, b = r.sample(_NONSENSE, 2)
    thing = f"the {r.choice(_COLOURS)} {r.choice(_SHAPES)}"
    form = r.randrange(3)
    if form == 0:
        premises, question, answer = f"All {a}s are {b}s. {thing.capitalize()} is a {a}.", f"Is {thing} a {b}?", "yes"
    elif form == 1:
        premises, question, answer = f"No {a}s are {b}s. {thing.capitalize()} is a {a}.", f"Is {thing} a {b}?", "no"
    else:
        premises, question, answer = (f"All {a}s are {b}s. {thing.capitalize()} is not a {b}.",
                                      f"Is {thing} a {a}?", "no")
    return f"{premises} {question} Answer with yes or no only.", answer, {"type": "exact"}, answer.capitalize() + "."


def _weekday_after(r: random.Random) -> Task:
    start, n = r.randrange(7), r.randint(1, 20)
    day = _DAYS[(start + n) % 7]
    prompt = f"What day of the week comes {n} days after {_DAYS[start]}?"
    return prompt, day, {"type": "contains_any", "values": [day]}, f"It is {day}."


def _month_after(r: random.Random) -> Task:
    start, n = r.randrange(12), r.randint(1, 11)
    month = _MONTHS[(start + n) % 12]
    prompt = f"Which month comes {n} months after {_MONTHS[start]}?"
    return prompt, month, {"type": "contains_any", "values": [month]}, month


def _shortest(r: random.Random) -> Task:
    things = r.sample(_WORDS, 3)
    tall, mid, short = things
    prompt = (f"The {tall} tower is taller than the {mid} tower. The {mid} tower is taller than the {short} tower. "
              f"Which tower is the shortest? Answer with its name only.")
    return prompt, short, {"type": "contains_any", "values": [short]}, short


# -- instruction following -----------------------------------------------------------------------

def _uppercase(r: random.Random) -> Task:
    topic = r.choice(_TOPICS)
    return (f"Write one short sentence about {topic} using only capital letters.", None,
            {"type": "instruction", "rule": "uppercase", "value": None}, f"{topic.upper()} IS WORTH A LOOK.")


def _lowercase(r: random.Random) -> Task:
    topic = r.choice(_TOPICS)
    return (f"Write one sentence about {topic} using only lowercase letters.", None,
            {"type": "instruction", "rule": "lowercase", "value": None}, f"{topic} is worth a look.")


def _max_words(r: random.Random) -> Task:
    topic, n = r.choice(_TOPICS), r.randint(4, 12)
    return (f"Describe {topic} in at most {n} words.", None,
            {"type": "instruction", "rule": "max_words", "value": n}, f"{topic} is lovely.")


def _min_words(r: random.Random) -> Task:
    topic, n = r.choice(_TOPICS), r.randint(20, 60)
    answer = " ".join([f"Many people enjoy {topic} every single day."] * (n // 5 + 1))
    return (f"Write at least {n} words about {topic}.", None,
            {"type": "instruction", "rule": "min_words", "value": n}, answer)


def _starts_with(r: random.Random) -> Task:
    topic, word = r.choice(_TOPICS), r.choice(_WORDS)
    return (f"Write a sentence about {topic} that starts with the word \"{word}\".", None,
            {"type": "instruction", "rule": "starts_with", "value": word}, f"{word.capitalize()} and {topic} go well.")


def _ends_with(r: random.Random) -> Task:
    topic, word = r.choice(_TOPICS), r.choice(_WORDS)
    return (f"Write a sentence about {topic} that ends with the word \"{word}\".", None,
            {"type": "instruction", "rule": "ends_with", "value": word}, f"Thinking of {topic} brings {word}.")


def _no_commas(r: random.Random) -> Task:
    topic = r.choice(_TOPICS)
    return (f"Write two sentences about {topic} without using any commas.", None,
            {"type": "instruction", "rule": "no_commas", "value": None},
            f"People like {topic}. It makes the day better.")


def _contains_word(r: random.Random) -> Task:
    topic, word = r.choice(_TOPICS), r.choice(_WORDS)
    return (f"Write a sentence about {topic} that includes the word \"{word}\".", None,
            {"type": "instruction", "rule": "contains_word", "value": word}, f"My note on {topic} mentions {word}.")


def _bullets(r: random.Random) -> Task:
    topic, n = r.choice(_TOPICS), r.randint(2, 5)
    answer = "\n".join(f"- Fact {i + 1} about {topic}." for i in range(n))
    return (f"List exactly {n} facts about {topic} as a bulleted list, one \"- \" bullet per line, "
            f"and nothing else.", None, {"type": "instruction", "rule": "bullet_count", "value": n}, answer)


def _one_word(r: random.Random) -> Task:
    topic = r.choice(_TOPICS)
    return (f"Reply with a single word that describes {topic}.", None,
            {"type": "instruction", "rule": "one_word", "value": None}, "Calm")


# -- JSON ----------------------------------------------------------------------------------------

def _exactly(value: int | float) -> dict[str, Any]:
    return {"type": "integer" if isinstance(value, int) else "number", "minimum": value, "maximum": value}


def _json_task(prompt: str, schema: dict[str, Any], example: object) -> Task:
    answer = json.dumps(example)
    return f"{prompt} Reply with the JSON only.", answer, {"type": "json_schema", "schema": schema}, answer


def _json_product(r: random.Random) -> Task:
    product, price, in_stock = r.choice(_GOODS), round(r.uniform(1, 200), 2), r.random() < 0.5
    prompt = (f"Return a JSON object with fields product (string), price (number) and in_stock (boolean) for a "
              f"{product} that costs {price} and is {'in stock' if in_stock else 'out of stock'}.")
    schema = {"type": "object", "required": ["product", "price", "in_stock"],
              "properties": {"product": {"type": "string", "minLength": 1}, "price": _exactly(price),
                             "in_stock": {"type": "boolean", "enum": [in_stock]}}}
    return _json_task(prompt, schema, {"product": product, "price": price, "in_stock": in_stock})


def _json_book(r: random.Random) -> Task:
    title = f"The {r.choice(_COLOURS).capitalize()} {r.choice(_WORDS).capitalize()}"
    pages, year = r.randint(80, 900), r.randint(1900, 2024)
    prompt = (f"Return a JSON object with fields title (string), pages (integer) and year (integer) for a book "
              f"titled \"{title}\" with {pages} pages, published in {year}.")
    schema = {"type": "object", "required": ["title", "pages", "year"],
              "properties": {"title": {"type": "string", "minLength": 1}, "pages": _exactly(pages),
                             "year": _exactly(year)}}
    return _json_task(prompt, schema, {"title": title, "pages": pages, "year": year})


def _json_weather(r: random.Random) -> Task:
    day, temperature, rain = r.choice(_DAYS), r.randint(-20, 40), r.random() < 0.5
    prompt = (f"Return a JSON object with fields day (string), temperature_c (integer) and rain (boolean) for "
              f"{day}, with a temperature of {temperature} degrees Celsius and {'rain' if rain else 'no rain'}.")
    schema = {"type": "object", "required": ["day", "temperature_c", "rain"],
              "properties": {"day": {"type": "string", "enum": [day, day.lower()]},
                             "temperature_c": _exactly(temperature), "rain": {"type": "boolean", "enum": [rain]}}}
    return _json_task(prompt, schema, {"day": day, "temperature_c": temperature, "rain": rain})


def _json_numbers(r: random.Random) -> Task:
    values = r.sample(range(1, 100), 3)
    prompt = f"Return a JSON array containing the integers {values[0]}, {values[1]} and {values[2]}, in that order."
    schema = {"type": "array", "items": {"type": "integer", "enum": list(values)}}
    return _json_task(prompt, schema, values)


def _json_order(r: random.Random) -> Task:
    order_id, goods = r.randint(1000, 99999), r.sample(_GOODS, 2)
    total = round(r.uniform(5, 400), 2)
    prompt = (f"Return a JSON object with fields order_id (integer), items (array of strings) and total (number) "
              f"for order {order_id} containing a {goods[0]} and a {goods[1]}, totalling {total}.")
    schema = {"type": "object", "required": ["order_id", "items", "total"],
              "properties": {"order_id": _exactly(order_id), "items": {"type": "array", "items": {"type": "string"}},
                             "total": _exactly(total)}}
    return _json_task(prompt, schema, {"order_id": order_id, "items": list(goods), "total": total})


def _json_settings(r: random.Random) -> Task:
    enabled, retries, mode = r.random() < 0.5, r.randint(0, 10), r.choice(["fast", "safe"])
    prompt = (f"Return a JSON object with fields enabled (boolean), retries (integer) and mode (\"fast\" or "
              f"\"safe\") for a setting that is {'enabled' if enabled else 'disabled'}, retries {retries} times "
              f"and runs in {mode} mode.")
    schema = {"type": "object", "required": ["enabled", "retries", "mode"], "additionalProperties": False,
              "properties": {"enabled": {"type": "boolean", "enum": [enabled]}, "retries": _exactly(retries),
                             "mode": {"type": "string", "enum": [mode]}}}
    return _json_task(prompt, schema, {"enabled": enabled, "retries": retries, "mode": mode})


_GENERATORS: dict[str, tuple[Callable[[random.Random], Task], ...]] = {
    "general/arithmetic": (_sum, _difference, _product, _shop, _boxes, _savings, _groups),
    "general/reasoning": (_larger, _next_in_sequence, _syllogism, _weekday_after, _month_after, _shortest),
    "general/instruction": (_uppercase, _lowercase, _max_words, _min_words, _starts_with, _ends_with, _no_commas,
                            _contains_word, _bullets, _one_word),
    "general/json": (_json_product, _json_book, _json_weather, _json_numbers, _json_order, _json_settings),
}


def _tasks(category: str, n: int, seed: int) -> list[Task]:
    r = random.Random(f"privtune-general:{category}:{seed}")
    if category == "general/factual":
        return _factual_tasks(n, r)
    kinds = _GENERATORS[category]
    return [kinds[i % len(kinds)](r) for i in range(n)]  # each kind in turn, so every kind is covered


def answered_general_items(per_category: int, seed: int) -> list[tuple[Item, str]]:
    """Every general item with an answer that passes its check (for tests and scorer calibration)."""
    if not 0 <= per_category <= MAX_PER_CATEGORY:
        raise ValueError(f"per_category must be between 0 and {MAX_PER_CATEGORY}, got {per_category}")
    out: list[tuple[Item, str]] = []
    for category in CATEGORIES:
        for i, (prompt, reference, check, answer) in enumerate(_tasks(category, per_category, seed)):
            item = {"id": f"{_ID_PREFIX[category]}-{i:04d}", "category": category, "kind": "generate",
                    "messages": [{"role": "user", "content": prompt}], "reference": reference, "check": check}
            out.append((item, answer))
    return out


def general_items(per_category: int, seed: int) -> list[Item]:
    """``per_category`` items of each general category (suite item dicts), the same for the same seed."""
    return [item for item, _ in answered_general_items(per_category, seed)]
