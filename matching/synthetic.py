"""A synthetic multi-organization population, with the errors real registrations carry.

Each person is registered at one to four organizations. Registrations carry typos,
nicknames, transposed birth dates, missing or mistyped SSNs, new phones, moves, married
names and swapped name order; the population includes twins and father/son (Sr/Jr) pairs,
the cases a master patient index must not merge. All data is invented.
"""

import contextlib
import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from nicknames import NickNamer

FEMALE = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret "
    "Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca "
    "Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha "
    "Katherine Christine Debra Rachel Carolyn Janet Catherine Maria Heather Diane Ruth Julie Olivia Joyce "
    "Virginia Victoria Kelly Lauren Christina Joan Evelyn Judith Megan Andrea Cheryl Hannah Jacqueline "
    "Martha Gloria Teresa Ann Sara Madison Frances Kathryn Janice Jean Abigail Alice Judy Sophia Grace "
    "Denise Amber Doris Marilyn Danielle Beverly Isabella Theresa Diana Natalie Brittany Charlotte Marie "
    "Kayla Alexis Lori Ximena Aaliyah Priya Mei Fatima Yesenia Guadalupe Oluwaseun Ingrid Siobhan Marisol "
    "Anh Keiko"
).split()
MALE = (
    "James Robert John Michael David William Richard Joseph Thomas Christopher Charles Daniel Matthew "
    "Anthony Mark Donald Steven Andrew Paul Joshua Kenneth Kevin Brian George Timothy Ronald Jason Edward "
    "Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel "
    "Gregory Alexander Patrick Frank Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Zachary "
    "Douglas Peter Kyle Noah Ethan Jeremy Walter Christian Keith Roger Terry Austin Sean Gerald Carl "
    "Harold Dylan Arthur Lawrence Jordan Jesse Bryan Billy Bruce Gabriel Joe Logan Alan Juan Albert "
    "Willie Elijah Wayne Randy Vincent Mateo Rahul Wei Tariq Oluwadamilare Santiago Lars Declan Minh "
    "Hiroshi Dmitri"
).split()
COMMON_FAMILY = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker "
    "Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
    "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James "
    "Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster"
).split()
SYLLABLES = (
    "an ber cal dor el fen gar hol is jan kel lor mar nor ost pel quin ros sel tor ul van wen yar zel bri "
    "cha dro fla gri kro lin mon pra sto tre vak whit ash bro"
).split()
STREETS = (
    "Oak Maple Cedar Pine Elm Washington Lake Hill Park Main Walnut Spring Ridge Sunset Highland Meadow "
    "Forest Willow River Church Mill Adams Jefferson Lincoln Madison Franklin Chestnut Birch Aspen"
).split()
STREET_TYPES = [("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"), ("Lane", "Ln"),
                ("Court", "Ct"), ("Boulevard", "Blvd"), ("Place", "Pl")]  # fmt: skip
CITIES = [
    ("Springfield", "IL", "627"), ("Riverside", "CA", "925"), ("Fairview", "OR", "970"), ("Franklin", "TN", "370"),
    ("Greenville", "SC", "296"), ("Madison", "WI", "537"), ("Salem", "OR", "973"), ("Georgetown", "TX", "786"),
    ("Clinton", "IA", "527"), ("Arlington", "VA", "222"),
]  # fmt: skip


@dataclass
class Population:
    rows: list[dict]  # in the dedupe_csv input form, plus "true_person"
    twin_pairs: list[tuple[int, int]] = field(default_factory=list)  # true_person ids
    generation_pairs: list[tuple[int, int]] = field(default_factory=list)


class _Generator:
    def __init__(self, seed: int, organizations: list[str]) -> None:
        self.rng = random.Random(seed)
        self.organizations = organizations
        self.nicknamer = NickNamer()
        self.used_ssns: set[str] = set()

    def family_name(self) -> str:
        if self.rng.random() < 0.55:
            weights = [1 / (rank + 1) for rank in range(len(COMMON_FAMILY))]
            return self.rng.choices(COMMON_FAMILY, weights)[0]
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.choice((2, 2, 3)))).capitalize()

    def ssn(self) -> str:
        while True:
            area = self.rng.randint(1, 899)
            if area == 666:
                continue
            value = f"{area:03d}-{self.rng.randint(1, 99):02d}-{self.rng.randint(1, 9999):04d}"
            if value not in self.used_ssns:
                self.used_ssns.add(value)
                return value

    def phone(self) -> str:
        return f"({self.rng.randint(201, 989)}) {self.rng.randint(200, 999)}-{self.rng.randint(0, 9999):04d}"

    def address(self) -> dict:
        city, state, prefix = self.rng.choice(CITIES)
        full, short = self.rng.choice(STREET_TYPES)
        street = self.rng.choice(STREETS)
        return {
            "number": str(self.rng.randint(1, 9999)),
            "street": street,
            "type": (full, short),
            "unit": f"Apt {self.rng.randint(1, 40)}" if self.rng.random() < 0.15 else "",
            "city": city,
            "state": state,
            "postal_code": f"{prefix}{self.rng.randint(0, 99):02d}",
        }

    def person(self, sex: str | None = None, **fixed) -> dict:
        sex = sex or self.rng.choice(("male", "female"))
        given = self.rng.choice(MALE if sex == "male" else FEMALE)
        born = date(1930, 1, 1) + timedelta(days=self.rng.randint(0, 33_000))
        person = {
            "sex": sex,
            "given": given,
            "middle": self.rng.choice(MALE if sex == "male" else FEMALE) if self.rng.random() < 0.6 else "",
            "family": self.family_name(),
            "suffix": "",
            "birth_date": born,
            "ssn": self.ssn(),
            "phone": self.phone() if self.rng.random() < 0.85 else "",
            "email": "",
            "address": self.address(),
        }
        person.update(fixed)
        if not person["email"] and self.rng.random() < 0.4:
            person["email"] = (
                f"{person['given'].lower()}.{person['family'].lower()}{self.rng.randint(1, 99)}@example.com"
            )
        return person

    # --- the errors real registrations carry -------------------------------------------

    def typo(self, text: str) -> str:
        if len(text) < 3:
            return text
        i = self.rng.randint(1, len(text) - 2)
        kind = self.rng.random()
        letter = self.rng.choice("abcdefghijklmnopqrstuvwxyz")
        if kind < 0.3:
            return text[:i] + letter + text[i + 1 :]
        if kind < 0.55:
            return text[:i] + text[i + 1 :]
        if kind < 0.8:
            return text[:i] + letter + text[i:]
        return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]

    def registration(self, person: dict, org: str, local_id: str) -> dict:
        rng = self.rng
        given, family, middle = person["given"], person["family"], person["middle"]
        if rng.random() < 0.10:
            nicknames = sorted(self.nicknamer.nicknames_of(given.lower()))
            if nicknames:
                given = rng.choice(nicknames).capitalize()
        if rng.random() < 0.08:
            given = self.typo(given)
        if rng.random() < 0.08:
            family = self.typo(family)
        if rng.random() < 0.3:
            middle = middle[:1]
        born = person["birth_date"]
        dob = born.isoformat()
        r = rng.random()
        if r < 0.02 and born.day <= 12 and born.day != born.month:
            dob = date(born.year, born.day, born.month).isoformat()
        elif r < 0.05:
            digits = list(dob.replace("-", ""))
            position = rng.choice((3, 6, 7))
            digits[position] = str((int(digits[position]) + rng.randint(1, 9)) % 10)
            candidate = "".join(digits)
            with contextlib.suppress(ValueError):  # an impossible date keeps the true one
                typed = date(int(candidate[:4]), int(candidate[4:6]), int(candidate[6:]))
                if date(1900, 1, 1) <= typed <= date(2025, 12, 31):
                    dob = typed.isoformat()
        elif r < 0.07:
            dob = ""
        ssn = person["ssn"]
        r = rng.random()
        if r < 0.30:
            ssn = ""
        elif r < 0.33:
            ssn = "xxx-xx-" + ssn[-4:]
        elif r < 0.35:
            digits = list(ssn)
            position = rng.choice((0, 1, 2, 4, 5, 7, 8, 9, 10))
            digits[position] = str((int(digits[position]) + 1) % 10)
            ssn = "".join(digits)
        address = person["address"]
        if rng.random() < 0.12:
            address = self.address()
        street_type = address["type"][rng.random() < 0.5]
        line = f"{address['number']} {address['street']} {street_type}" + (
            f" {address['unit']}" if address["unit"] else ""
        )
        phone = person["phone"]
        if rng.random() < 0.15:
            phone = self.phone() if rng.random() < 0.6 else ""
        if rng.random() < 0.01:
            given, family = family, given
        return {
            "org_id": org, "local_id": local_id, "given_name": given, "middle_name": middle, "family_name": family,
            "suffix": person["suffix"], "sex": person["sex"] if rng.random() > 0.02 else "", "birth_date": dob,
            "ssn": ssn, "phone": phone, "email": person["email"] if rng.random() > 0.2 else "",
            "address_line": line, "city": address["city"], "state": address["state"],
            "postal_code": address["postal_code"],
        }  # fmt: skip


def generate(
    people: int, *, organizations: list[str] | None = None, seed: int = 7, twin_share: float = 0.02,
    generation_share: float = 0.01,
) -> Population:  # fmt: skip
    """`people` persons registered at 1-4 organizations each, with twins and Sr/Jr pairs among them."""
    organizations = organizations or ["riverside", "lakeside", "metrolab", "northclinic", "valleyhealth"]
    g = _Generator(seed, organizations)
    persons: list[dict] = []
    population = Population(rows=[])
    while len(persons) < people:
        r = g.rng.random()
        if r < twin_share and len(persons) + 2 <= people:
            first = g.person()
            second = g.person(family=first["family"], birth_date=first["birth_date"], address=first["address"],
                              phone=first["phone"])  # fmt: skip
            while second["given"] == first["given"]:
                second["given"] = g.rng.choice(MALE if second["sex"] == "male" else FEMALE)
            population.twin_pairs.append((len(persons), len(persons) + 1))
            persons += [first, second]
        elif r < twin_share + generation_share and len(persons) + 2 <= people:
            father = g.person(
                sex="male", suffix="Sr", birth_date=date(1930, 1, 1) + timedelta(days=g.rng.randint(0, 21_000))
            )
            born = father["birth_date"] + timedelta(days=g.rng.randint(20 * 365, 38 * 365))
            son = g.person(sex="male", given=father["given"], family=father["family"], address=father["address"],
                           phone=father["phone"], suffix="Jr", birth_date=born)  # fmt: skip
            population.generation_pairs.append((len(persons), len(persons) + 1))
            persons += [father, son]
        else:
            persons.append(g.person())
    counter = 0
    for index, person in enumerate(persons):
        count = min(1 + int(g.rng.expovariate(1.1)), 4)
        for org in g.rng.sample(organizations, min(count, len(organizations))):
            counter += 1
            if person["sex"] == "female" and g.rng.random() < 0.04:
                person = {**person, "family": g.family_name()}
            row = g.registration(person, org, f"{org[:3].upper()}{counter:08d}")
            row["true_person"] = index
            population.rows.append(row)
    g.rng.shuffle(population.rows)
    return population
