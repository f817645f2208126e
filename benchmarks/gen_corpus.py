"""A deterministic synthetic corpus of procedure pages, for the throughput and memory benchmarks.

    python benchmarks/gen_corpus.py OUT_DIR -n 10000 --seed 1

Every page is written from our own word lists and templates (nothing is copied from real sites), in
all the shapes the parser handles: HTML in five markup styles (semantic h2/ul/ol, bold paragraphs
with "1." step paragraphs, details/summary, dl/dt/dd, div soup with <br> lines) wrapped in site
chrome of varying weight, the two text renderings (blank-line "  • " and single-newline "- "),
and Markdown. Codes cover cpt (with category II/III such as 1234F and 0123T), hcpcs, icd10pcs and
cdt, plus a few diagnosis (icd10cm) pages. Quirks: every name-block form, "Label:" items,
sub-headings of several kinds, nested bullets, headings outside the vocabulary, Similar Codes,
typed facts ("2 to 4 hours"), the newer template (breadcrumb, code-prefixed title, tag line),
cut titles and truncated text pages. Most pages have a ``.meta.json`` sidecar with their URL; a
small share are bad inputs (empty, binary, no code anywhere) and duplicates of another code.

The same (n, seed) always gives the same bytes. ``generate(out_dir, n, seed)`` is the API.
"""

from __future__ import annotations

import argparse
import html
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

E = html.escape

# ----------------------------------------------------------------------------------------------
# word lists (ours)

PARTS = [
    "knee",
    "hip",
    "shoulder",
    "wrist",
    "ankle",
    "elbow",
    "lumbar spine",
    "cervical spine",
    "colon",
    "stomach",
    "esophagus",
    "bladder",
    "kidney",
    "liver",
    "gallbladder",
    "thyroid",
    "heart valve",
    "coronary artery",
    "carotid artery",
    "lung",
    "sinus",
    "tonsils",
    "cornea",
    "retina",
    "skin",
    "breast",
    "prostate",
    "uterus",
    "ovary",
    "jaw",
    "femur",
    "tibia",
    "rotator cuff",
    "meniscus",
    "small intestine",
    "rectum",
    "pancreas",
    "spleen",
    "trachea",
    "vocal cords",
    "middle ear",
    "forearm",
    "hand tendon",
    "foot",
    "big toe",
    "scalp",
    "eyelid",
    "nasal septum",
    "urethra",
    "aorta",
]
ACTIONS = [
    "repair",
    "removal",
    "biopsy",
    "replacement",
    "reconstruction",
    "drainage",
    "excision",
    "fusion",
    "ablation",
    "injection",
    "imaging",
    "exploration",
    "implantation",
    "debridement",
    "stabilization",
    "resection",
    "aspiration",
    "dilation",
    "ligation",
    "grafting",
    "release",
    "decompression",
]
APPROACHES = [
    "open",
    "arthroscopic",
    "laparoscopic",
    "endoscopic",
    "percutaneous",
    "minimally invasive",
    "image-guided",
    "robot-assisted",
    "transcatheter",
    "microsurgical",
]
QUALIFIERS = [
    "with imaging guidance",
    "each additional segment",
    "unilateral",
    "bilateral",
    "including local anesthesia",
    "per session",
    "first lesion",
    "with removal of foreign body",
    "without implant",
    "with insertion of drainage tube",
    "complex",
    "simple",
    "initial",
    "subsequent",
    "up to 2 cm",
    "more than 5 cm",
    "single level",
    "two or more levels",
]
CONDITIONS = [
    "osteoarthritis",
    "chronic pain",
    "recurrent bleeding",
    "infection",
    "a benign tumor",
    "a suspicious mass",
    "a blockage",
    "narrowing of the vessel",
    "inflammation",
    "a sports injury",
    "a congenital deformity",
    "stones",
    "polyps",
    "a torn ligament",
    "nerve compression",
    "scar tissue",
    "fluid buildup",
    "instability of the joint",
    "a fracture that has not healed",
    "reflux",
]
SYMPTOMS = [
    "persistent pain",
    "swelling",
    "numbness",
    "tingling",
    "weakness",
    "fever",
    "shortness of breath",
    "difficulty swallowing",
    "reduced range of motion",
    "stiffness in the morning",
    "blood in the stool",
    "frequent urination",
    "blurred vision",
    "hearing loss",
    "fatigue",
    "unexplained weight loss",
    "a clicking sensation",
    "recurring infections",
]
TOOLS = [
    "an arthroscope",
    "a high-definition camera",
    "surgical staples",
    "a bone saw",
    "an ultrasound probe",
    "a fluoroscopy unit",
    "absorbable sutures",
    "a laser fiber",
    "a balloon catheter",
    "metal screws",
    "a titanium plate",
    "a flexible endoscope",
    "an electrocautery pen",
    "a biopsy needle",
    "a surgical microscope",
    "a stent",
    "a drainage tube",
    "a suction device",
    "a radiofrequency probe",
]
RISKS = [
    "infection at the incision site",
    "bleeding",
    "blood clots in the legs",
    "damage to nearby nerves",
    "a reaction to the anesthesia",
    "scarring",
    "stiffness",
    "persistent pain",
    "the need for a second procedure",
    "injury to nearby organs",
    "a slow-healing wound",
    "a leak at the repair site",
    "temporary numbness",
    "loosening of the implant",
    "swelling that lasts several weeks",
]
BENEFITS = [
    "relief of pain",
    "better mobility",
    "a clear diagnosis",
    "removal of the source of symptoms",
    "a lower risk of complications later",
    "a faster return to work",
    "improved quality of life",
    "a smaller scar than open surgery",
    "less time in hospital",
    "restored function of the joint",
]
PROS = [
    "an orthopedic surgeon",
    "a general surgeon",
    "an anesthesiologist",
    "a nurse anesthetist",
    "a surgical nurse",
    "a radiologist",
    "a gastroenterologist",
    "a cardiologist",
    "a surgical technologist",
    "a physician assistant",
    "a dental hygienist",
    "a dentist",
    "an interventional radiologist",
    "a physical therapist",
]
SETTINGS = [
    "a hospital operating room",
    "an ambulatory surgery center",
    "a hospital outpatient department",
    "a specialist clinic",
    "a physician's office",
    "an imaging suite",
    "a dental office",
    "a cardiac catheterization lab",
    "an endoscopy unit",
]
DEVICES = [
    "knee brace",
    "ankle orthosis",
    "wrist splint",
    "insulin pump supply",
    "glucose test strip",
    "wound dressing",
    "urinary catheter",
    "compression stocking",
    "walking boot",
    "nebulizer kit",
    "infusion set",
    "cervical collar",
    "wheelchair cushion",
    "oxygen tubing",
    "lancet",
    "foot orthotic",
]
DEVICE_MODS = [
    "adjustable",
    "prefabricated",
    "custom-fitted",
    "disposable",
    "sterile",
    "per 50 units",
    "per pair",
    "with rigid support",
    "elastic",
    "off-the-shelf",
    "each",
    "pneumatic",
]
DENTAL = [
    "periodic oral evaluation",
    "resin-based composite, two surfaces, posterior",
    "root canal, molar",
    "porcelain crown",
    "extraction of erupted tooth",
    "scaling and root planing, four teeth",
    "sealant, per tooth",
    "bitewing radiographs, two images",
    "complete denture, upper",
    "fluoride varnish",
    "implant abutment",
    "gingival flap procedure",
]
PCS_OPS = ["Excision", "Replacement", "Drainage", "Bypass", "Resection", "Insertion", "Repair", "Release"]
PCS_SIDES = ["left", "right", ""]
PCS_APPROACH = ["open approach", "percutaneous approach", "percutaneous endoscopic approach"]
DIAGNOSES = [
    "primary osteoarthritis of the right knee",
    "type 2 diabetes without complications",
    "acute sinusitis",
    "chronic obstructive lung disease",
    "iron deficiency anemia",
    "migraine without aura",
    "essential hypertension",
    "seasonal allergic rhinitis",
]
WHEN = ["During", "After", "Before", "At the start of", "Toward the end of", "Once the team begins"]
EXTRA_HEADINGS = [
    "Frequently Asked Questions",
    "Cost and Coverage",
    "Key Points",
    "History of the Technique",
    "Research and Outcomes",
    "Questions to Ask Your Doctor",
    "Billing Notes",
]
SUB_COLON = [
    "Patient criteria:",
    "Pre-Procedure Instructions:",
    "Common Risks:",
    "Rare Risks:",
    "Diagnostic Tests:",
    "Medications:",
    "Post-Procedure Care:",
    "Symptoms:",
    "Day of the procedure:",
]
SUB_PLAIN = ["Medical Condition or Problem", "Before You Arrive", "Serious but Rare Complications"]
LEADINS = [
    "The main steps are as follows:",
    "Patients should keep the following in mind:",
    "The care team usually checks these points:",
    "Typical signs that the procedure may help include:",
]
SITES = [
    ("medcodes", "https://medcodes.example.com/code/{folder}/{code}-{slug}"),
    ("procguide", "https://procguide.example.org/{folder}/codes/{code}"),
    ("careref", "https://www.careref.example.net/codes/{folder}/{code}/{slug}"),
]
FOLDER = {"cpt": "cpt4", "hcpcs": "hcpcs", "icd10pcs": "icd10pcs", "cdt": "cdt", "icd10cm": "icd10cm"}
CODE_LINES = {
    "cpt": ["CPT4 code", "CPT4 code", "CPT code"],
    "hcpcs": ["HCPCS code", "HCPCS code", "HCPCS Level II code"],
    "icd10pcs": ["ICD10PCS code", "ICD-10-PCS code"],
    "cdt": ["CDT code"],
    "icd10cm": ["ICD10CM code"],
}
TAGS = {
    "cpt": "CPT4Procedure",
    "hcpcs": "HCPCSDMEPOS",
    "icd10pcs": "ICD10PCSInpatient",
    "cdt": "CDTDental",
    "icd10cm": "ICD10CMDiagnosis",
}
ALIASES = {
    "summary": ["Summary"] * 6 + ["Overview", "Procedure Summary"],
    "purpose": ["Purpose"] * 6 + ["Purpose of the Procedure"],
    "indications": ["Indications"] * 6 + ["Indications for the Procedure"],
    "contraindications": ["Contraindications"],
    "preparation": ["Preparation"] * 6 + ["How to Prepare", "Before the Procedure"],
    "procedure_description": ["Procedure Description"] * 6 + ["Procedure Steps", "How is it done"],
    "equipment": ["Tools, Equipment, and Technology Used"] * 4
    + ["Tools, Equipment & Technology", "Equipment Used"],
    "anesthesia": ["Anesthesia or Sedation"] * 3 + ["Anesthesia"],
    "duration": ["Duration"] * 6 + ["Procedure Duration"],
    "setting": ["Setting"] * 6 + ["Care Setting"],
    "personnel": ["Personnel"] * 6 + ["Care Team"],
    "risks": ["Risks and Complications"] * 5 + ["Risks", "Possible Complications", "Risks & Complications"],
    "benefits": ["Benefits"] * 6 + ["Expected Benefits"],
    "recovery": ["Recovery"] * 6 + ["Recovery and Aftercare"],
    "alternatives": ["Alternatives"] * 6 + ["Alternative Treatments"],
    "patient_experience": ["Patient Experience"] * 6 + ["What to Expect"],
    "similar_codes": ["Similar Codes"] * 6 + ["Related Codes"],
}
CONDITION_SECTIONS = [
    ("Summary", "p"),
    ("Causes", "l"),
    ("Risk Factors", "l"),
    ("Symptoms", "l"),
    ("Diagnosis", "l"),
    ("Treatment Options", "l"),
    ("Complications", "l"),
    ("Prognosis and Follow-Up", "p"),
    ("When to Seek Professional Help", "p"),
]

# ----------------------------------------------------------------------------------------------
# the page model: a flat stream of blocks every renderer understands


@dataclass
class Block:
    """One unit of page content. kind: crumb, title, code, tag, heading, sub, para, item, link."""

    kind: str
    text: str
    level: int = 0  # item nesting depth (0 or 1)
    ordered: bool = False  # item of a numbered list
    href: str | None = None  # link target (Similar Codes)


@dataclass
class Page:
    system: str
    code: str
    site: int
    blocks: list[Block] = field(default_factory=list)


class Writer:
    """Sentences and lists from the word lists, driven by one seeded Random."""

    def __init__(self, rng: random.Random, name: str, part: str) -> None:
        self.r = rng
        self.name = name
        self.part = part

    def c(self, xs: list[str]) -> str:
        return self.r.choice(xs)

    def sentence(self) -> str:
        r, c = self.r, self.c
        forms = [
            f"The {self.name.lower()} is used when {c(CONDITIONS)} affects the {self.part}.",
            f"It helps relieve {c(SYMPTOMS)} and {c(SYMPTOMS)} caused by {c(CONDITIONS)}.",
            f"{c(PROS).capitalize()} uses {c(TOOLS)} to reach the {self.part} through a small opening.",
            f"The goal is {c(BENEFITS)} while keeping the risk of {c(RISKS)} low.",
            f"Most patients notice {c(BENEFITS)} within a few weeks of the {c(ACTIONS)}.",
            f"The team reviews the {self.part} with {c(TOOLS)} before any tissue is treated.",
            f"In rare cases {c(RISKS)} may occur, which is why follow-up visits matter.",
            f"Compared with an {c(APPROACHES)} approach, this method often means {c(BENEFITS)}.",
            f"Results depend on age, general health and how long {c(CONDITIONS)} has been present.",
            f"{c(WHEN)} the {c(ACTIONS)}, the {self.part} is checked for {c(CONDITIONS)}.",
        ]
        s = r.choice(forms)
        return s[0].upper() + s[1:]

    def paragraph(self, lo: int = 2, hi: int = 4) -> str:
        return " ".join(self.sentence() for _ in range(self.r.randint(lo, hi)))

    def item(self, key: str) -> str:
        r, c = self.r, self.c
        by_key = {
            "indications": [
                f"{c(SYMPTOMS).capitalize()} that has lasted more than {r.randint(2, 12)} weeks.",
                f"Imaging that shows {c(CONDITIONS)} in the {self.part}.",
                f"{c(SYMPTOMS).capitalize()} not relieved by medication or therapy.",
                f"A history of {c(CONDITIONS)} with {c(SYMPTOMS)}.",
            ],
            "contraindications": [
                f"Active {c(['infection', 'bleeding disorder', 'heart failure'])}.",
                f"Allergy to {c(['contrast dye', 'latex', 'local anesthetics'])}.",
                "Poor general health that makes anesthesia unsafe.",
            ],
            "preparation": [
                f"Stop {c(['blood thinners', 'aspirin', 'herbal supplements'])} "
                f"{r.randint(2, 7)} days before, as your doctor advises.",
                f"{c(['Blood tests', 'An ECG', 'A chest X-ray', 'An MRI'])} of the {self.part}.",
                "Arrange for someone to drive you home afterwards.",
                "Wear loose clothing and leave jewelry at home.",
            ],
            "procedure_description": [
                f"{c(PROS).capitalize()} cleans and marks the {self.part}.",
                f"{c(['General', 'Local', 'Regional'])} anesthesia is given.",
                f"A small incision is made and {c(TOOLS)} is inserted.",
                f"The {c(ACTIONS)} of the affected tissue is carried out.",
                f"The area is checked with {c(TOOLS)} for {c(RISKS)}.",
                "The incision is closed and a dressing is applied.",
            ],
            "equipment": [f"{c(TOOLS).capitalize()}.", f"{c(TOOLS).capitalize()} and {c(TOOLS)}."],
            "personnel": [f"{c(PROS).capitalize()}.", f"{c(PROS).capitalize()} who assists throughout."],
            "risks": [f"{c(RISKS).capitalize()}.", f"{c(RISKS).capitalize()}, which is usually treatable."],
            "benefits": [f"{c(BENEFITS).capitalize()}.", f"{c(BENEFITS).capitalize()} and {c(BENEFITS)}."],
            "recovery": [
                f"Rest the {self.part} for {r.randint(2, 10)} days.",
                f"Pain medicine for {r.randint(1, 5)} to {r.randint(6, 14)} days.",
                f"Physical therapy {r.randint(1, 3)} times a week.",
                "Follow-up appointment to check healing and remove stitches.",
            ],
            "alternatives": [
                f"{c(APPROACHES).capitalize()} {c(ACTIONS)} of the {self.part}.",
                f"{c(['Medication', 'Physical therapy', 'Watchful waiting', 'Bracing'])} "
                f"to manage {c(SYMPTOMS)}.",
            ],
        }
        return r.choice(by_key.get(key) or [self.sentence()])

    def items(self, key: str, lo: int = 2, hi: int = 6) -> list[str]:
        return [self.item(key) for _ in range(self.r.randint(lo, hi))]


# ----------------------------------------------------------------------------------------------
# planning: which code, which shape, which quirks


def _codes(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n distinct (system, code) pairs, mixed like a real crawl."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    pcs_chars = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    while len(out) < n:
        x = rng.random()
        if x < 0.40:
            sys_, code = "cpt", f"{rng.randint(100, 99999):05d}"
        elif x < 0.45:
            sys_, code = "cpt", f"{rng.randint(1, 9999):04d}{rng.choice('FTU')}"
        elif x < 0.70:
            sys_, code = "hcpcs", f"{rng.choice('ABCEGHJKLMPQRSTV')}{rng.randint(0, 9999):04d}"
        elif x < 0.88:
            sys_, code = "icd10pcs", rng.choice("0123456789BCDFGHX") + "".join(rng.choices(pcs_chars, k=6))
        elif x < 0.995:
            sys_, code = "cdt", f"D{rng.randint(0, 9999):04d}"
        else:
            sys_ = "icd10cm"
            code = f"{rng.choice('EFGIJKM')}{rng.randint(10, 99)}.{rng.randint(0, 99)}"
        if (sys_, code) not in seen:
            seen.add((sys_, code))
            out.append((sys_, code))
    return out


def _slug(text: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())[:80]


def _title(rng: random.Random, system: str) -> tuple[str, str, str]:
    """(title, procedure name, body part) for a code of ``system``."""
    part = rng.choice(PARTS)
    if system == "hcpcs" and rng.random() < 0.6:
        dev = rng.choice(DEVICES)
        title = f"{dev.capitalize()}, {rng.choice(DEVICE_MODS)}"
        if rng.random() < 0.4:
            title += f", {rng.choice(DEVICE_MODS)}"
        return title, dev.title(), part
    if system == "cdt":
        t = rng.choice(DENTAL)
        return t[0].upper() + t[1:], t.split(",")[0].title(), "tooth"
    if system == "icd10pcs":
        side = rng.choice(PCS_SIDES)
        op = rng.choice(PCS_OPS)
        title = f"{op} of {side + ' ' if side else ''}{part}, {rng.choice(PCS_APPROACH)}"
        return title, f"{part.title()} {op}", part
    if system == "icd10cm":
        t = rng.choice(DIAGNOSES)
        return t[0].upper() + t[1:], t.title(), part
    act = rng.choice(ACTIONS)
    title = f"{rng.choice(APPROACHES).capitalize()} {act} of {part}"
    for _ in range(rng.randint(0, 2)):
        title += f"; {rng.choice(QUALIFIERS)}"
    return title, f"{part.title()} {act.title()}", part


def _name_block(rng: random.Random, w: Writer, name: str, system: str, code: str) -> list[Block]:
    """The name block in one of the forms real pages use."""
    tech = f"{name} ({rng.choice(APPROACHES)} technique)"
    head = "Name of the Condition" if system == "icd10cm" else "Name of the Procedure"
    out: list[Block] = []
    if rng.random() < 0.06:  # an extra line before it
        out.append(Block("para", f"{name} Procedure ({code})"))
    out.append(Block("heading", head + (":" if rng.random() < 0.8 else "")))
    form = rng.randrange(6)
    if form == 0:
        out += [Block("para", f"Common name(s): {name}"), Block("para", f"Technical or medical term: {tech}")]
    elif form == 1:
        out += [Block("item", f"Common Name: {name}"), Block("item", f"Technical/Medical Term: {tech}")]
    elif form == 2:
        out.append(Block("para", f"Common name(s): {name} Medical term: {tech}"))
    elif form == 3:
        out += [Block("para", name), Block("para", f"({tech})")]
    elif form == 4:
        out.append(Block("para", f"This is commonly called {name.lower()}; medically, {tech.lower()}."))
    else:
        out.append(Block("para", name))
    return out


def _list_section(rng: random.Random, w: Writer, key: str, ordered: bool = False) -> list[Block]:
    """Items of a list section, with the quirks: Label items, sub-headings, nesting, lead-ins."""
    out: list[Block] = []
    x = rng.random()
    if x < 0.12 and not ordered:  # whole section as a paragraph instead of a list
        return [Block("para", w.paragraph(1, 3))]
    if x < 0.30 and not ordered:  # sub-headings, each followed by items
        for _ in range(rng.randint(2, 3)):
            f = rng.random()
            if f < 0.55:
                out.append(Block("sub", rng.choice(SUB_COLON)))
            elif f < 0.75:
                out.append(Block("sub", rng.choice(SUB_PLAIN)))
            else:  # a bare "Label:" bullet
                out.append(Block("item", rng.choice(SUB_COLON)))
            out += [Block("item", t) for t in w.items(key, 1, 4)]
        return out
    if x < 0.38:
        out.append(Block("para", rng.choice(LEADINS)))
    for i, t in enumerate(w.items(key, 3 if ordered else 2, 8 if ordered else 6)):
        if rng.random() < 0.15 and not ordered:
            label = rng.choice(["Goals", "Medical Conditions", "Symptoms", "Patient Criteria", "Timing"])
            t = f"{label}: {t[0].lower()}{t[1:]}"
        out.append(Block("item", t, ordered=ordered))
        if rng.random() < 0.08 and i > 0:  # nested bullets under this item
            out += [Block("item", s, level=1) for s in w.items(key, 1, 3)]
    return out


def _fact(rng: random.Random, key: str) -> str:
    """A sentence carrying a typed fact (duration, stay, recovery weeks, fasting, anesthesia)."""
    a = rng.randint(1, 4)
    b = a + rng.randint(1, 4)
    if key == "duration":
        return rng.choice(
            [
                f"The procedure usually takes {a} to {b} hours.",
                f"Expect it to last about {rng.choice([20, 30, 45, 60, 90])} minutes.",
                f"It typically takes {a * 15}-{b * 15} minutes from start to finish.",
                f"Plan for {a} to {b} hours, including time in the recovery area.",
            ]
        )
    if key == "setting":
        s = f"It is performed in {rng.choice(SETTINGS)} or {rng.choice(SETTINGS)}."
        if rng.random() < 0.5:
            s += f" Most patients stay in hospital for {a} to {b} days."
        elif rng.random() < 0.5:
            s += " It is an outpatient procedure and patients usually go home the same day."
        return s
    if key == "recovery":
        return f"Most people return to normal activities within {a + 1} to {b + 2} weeks."
    if key == "preparation":
        return f"Fasting for {a * 2} to {b * 3} hours before the procedure."
    return rng.choice(
        [
            "General anesthesia is used, so the patient is asleep throughout.",
            "Local anesthesia with light sedation is usually enough.",
            "Regional anesthesia, such as a nerve block, numbs the area.",
            "No anesthesia is needed; the procedure is painless.",
        ]
    )


def _procedure_body(
    rng: random.Random, w: Writer, page: Page, codes: list[tuple[str, str]], url_of: dict[str, str]
) -> list[Block]:
    out: list[Block] = []

    def head(key: str) -> None:
        h = rng.choice(ALIASES[key])
        if rng.random() < 0.08:
            h += ":"
        out.append(Block("heading", h))

    order = [
        "summary",
        "purpose",
        "indications",
        "contraindications",
        "preparation",
        "procedure_description",
        "equipment",
        "anesthesia",
        "duration",
        "setting",
        "personnel",
        "risks",
        "benefits",
        "recovery",
        "alternatives",
        "patient_experience",
    ]
    optional = {
        "contraindications": 0.3,
        "equipment": 0.45,
        "anesthesia": 0.4,
        "personnel": 0.8,
        "benefits": 0.85,
        "alternatives": 0.85,
        "patient_experience": 0.8,
    }
    extra_at = rng.randrange(len(order)) if rng.random() < 0.2 else -1
    for i, key in enumerate(order):
        if rng.random() > optional.get(key, 0.96):
            continue
        if i == extra_at:
            out.append(Block("heading", rng.choice(EXTRA_HEADINGS)))
            out.append(Block("para", w.paragraph(1, 3)))
        head(key)
        if key in ("summary", "patient_experience"):
            out += [Block("para", w.paragraph(2, 4)) for _ in range(rng.randint(1, 2))]
        elif key == "purpose":
            if rng.random() < 0.35:
                out += [
                    Block("item", f"Medical Conditions: {rng.choice(CONDITIONS)} of the {w.part}."),
                    Block("item", f"Goals/Outcomes: {w.sentence()}"),
                ]
            else:
                out.append(Block("para", w.paragraph(2, 3)))
        elif key in ("duration", "setting", "anesthesia"):
            out.append(Block("para", _fact(rng, key)))
            if rng.random() < 0.4:
                out.append(Block("para", w.sentence()))
        elif key == "procedure_description":
            out += _list_section(rng, w, key, ordered=True)
            if rng.random() < 0.15:  # Tools/Anesthesia lines inside the description
                out.append(Block("para", f"Tools/Equipment: {rng.choice(TOOLS)}, {rng.choice(TOOLS)}."))
                out.append(Block("para", f"Anesthesia: {_fact(rng, 'anesthesia')}"))
        else:
            out += _list_section(rng, w, key)
            if key in ("preparation", "recovery") and rng.random() < 0.6:
                out.append(Block("item", _fact(rng, key)))
    if rng.random() < 0.7:  # Similar Codes, links to neighbours of the same system
        head("similar_codes")
        pool = rng.sample(codes, min(len(codes), 12))
        same = [c for c in pool if c[0] == page.system and c[1] != page.code]
        for sys_, code in same[: rng.randint(2, 8)]:
            title, _, _ = _title(random.Random(f"{sys_}{code}"), sys_)
            out.append(Block("link", f"{code} - {title}", href=url_of.get(code)))
    return out


def _condition_body(rng: random.Random, w: Writer) -> list[Block]:
    out: list[Block] = []
    for heading, shape in CONDITION_SECTIONS:
        if rng.random() < 0.15:
            continue
        out.append(Block("heading", heading))
        if shape == "p":
            out.append(Block("para", w.paragraph(1, 3)))
        else:
            out += [
                Block("item", f"{rng.choice(SYMPTOMS + CONDITIONS).capitalize()}.")
                for _ in range(rng.randint(2, 5))
            ]
    return out


def _url(site: int, system: str, code: str, title: str) -> str:
    return SITES[site][1].format(folder=FOLDER[system], code=code, slug=_slug(title))


def build_page(
    rng: random.Random, system: str, code: str, codes: list[tuple[str, str]], url_of: dict[str, str]
) -> Page:
    """One page's content as a block stream (markup is chosen later)."""
    title, name, part = _title(random.Random(f"{system}{code}"), system)
    page = Page(system, code, rng.randrange(len(SITES)))
    w = Writer(rng, name, part)
    b = page.blocks
    newer = rng.random() < 0.2  # the newer template: breadcrumb, code-prefixed title, tag line
    if newer:
        b.append(Block("crumb", f"Codes / {FOLDER[system].upper()} / {code}"))
    shown = f"{code} {title}" if newer else title
    r = rng.random()
    if r < 0.04:
        shown = shown[: max(12, len(shown) * 2 // 3)]  # cut mid-word
    elif r < 0.08:
        shown = shown[: max(12, len(shown) * 3 // 4)].rstrip() + "..."
    b.append(Block("title", shown))
    b.append(Block("code", rng.choice(CODE_LINES[system])))
    if newer:
        b.append(Block("tag", TAGS[system]))
    b += _name_block(rng, w, name, system, code)
    b += _condition_body(rng, w) if system == "icd10cm" else _procedure_body(rng, w, page, codes, url_of)
    return page


# ----------------------------------------------------------------------------------------------
# renderers: text (two styles), Markdown, HTML (five styles) in site chrome


def _runs(blocks: list[Block]) -> Iterator[tuple[str, list[Block]]]:
    """Group consecutive items (and links) so renderers can open and close lists."""
    i = 0
    while i < len(blocks):
        k = blocks[i].kind
        if k in ("item", "link"):
            j = i
            while (
                j < len(blocks)
                and blocks[j].kind == k
                and (k == "link" or blocks[j].ordered == blocks[i].ordered or blocks[j].level > 0)
            ):
                j += 1
            yield k, blocks[i:j]
            i = j
        else:
            yield k, [blocks[i]]
            i += 1


def render_text(page: Page, rng: random.Random, style: str) -> str:
    """The text renderings: "bullets" (blank lines, "  • ", "  1. ") or "dashes" (newlines, "- ")."""
    lines: list[str] = []
    if rng.random() < 0.7:
        lines.append("Search all medical codes")
    for kind, run in _runs(page.blocks):
        if kind in ("item", "link"):
            if kind == "link" and (style == "dashes" or rng.random() < 0.5):
                continue  # the rendering did not keep the links
            n = 0
            for bl in run:
                if bl.level == 0:
                    n += 1
                pad = "    " * bl.level
                if style == "bullets":
                    mark = f"{n}." if bl.ordered and bl.level == 0 else "•"
                    lines.append(f"  {pad}{mark} {bl.text}")
                else:
                    lines.append(f"{pad}- {bl.text}")
            if style == "dashes" and kind == "item" and rng.random() < 0.02:
                lines[-1] += " ##### Patient Criteria"  # a Markdown leftover run into a bullet
        elif kind == "heading" and rng.random() < 0.02:
            lines.append("    " + run[0].text)  # a heading indented by four spaces
        else:
            lines.append(run[0].text)
    text = ("\n\n" if style == "bullets" else "\n").join(lines) + "\n"
    if rng.random() < 0.12:  # most real text pages are the first 2,000 bytes
        text = text.encode()[:2000].decode("utf-8", "ignore")
    return text


def render_markdown(page: Page, rng: random.Random) -> str:
    out: list[str] = []
    for kind, run in _runs(page.blocks):
        bl = run[0]
        if kind == "title":
            out.append(f"# {bl.text}")
        elif kind == "heading":
            out.append(f"## {bl.text.rstrip(':')}")
        elif kind == "sub":
            out.append(f"### {bl.text.rstrip(':')}" if rng.random() < 0.5 else f"**{bl.text}**")
        elif kind == "item":
            n = 0
            rows = []
            for it in run:
                n += it.level == 0
                mark = f"{n}." if it.ordered and it.level == 0 else "-"
                rows.append(f"{'    ' * it.level}{mark} {it.text}")
            out.append("\n".join(rows))
        elif kind == "link":
            out.append("\n".join(f"- [{it.text}]({it.href})" if it.href else f"- {it.text}" for it in run))
        elif kind == "code":
            out.append(f"*{bl.text}*")
        else:
            out.append(bl.text)
    return "\n\n".join(out) + "\n"


HTML_STYLES = ("semantic", "bold", "accordion", "dl", "brlines")


def _li(text: str, style: str) -> str:
    head, sep, rest = text.partition(": ")
    if sep and style in ("semantic", "accordion") and 0 < len(head) <= 40 and head[0].isupper():
        return f"<strong>{E(head)}:</strong> {E(rest)}"
    return E(text)


def _list_html(run: list[Block], style: str, kind: str) -> str:
    if kind == "link":
        rows = "".join(f'<li class="related"><a href="{E(b.href or "#")}">{E(b.text)}</a></li>' for b in run)
        return f'<ul class="similar-codes">{rows}</ul>'
    ordered = run[0].ordered
    if style == "brlines":
        parts, n = [], 0
        for b in run:
            n += b.level == 0
            parts.append(f"{n}. {E(b.text)}" if ordered and b.level == 0 else f"• {E(b.text)}")
        return "<p>" + "<br>\n".join(parts) + "</p>"
    if style == "bold" and ordered:  # steps as plain "1." paragraphs, nested bullets as a list
        parts, n = [], 0
        for b in run:
            n += b.level == 0
            parts.append(f"<p>{n}. {E(b.text)}</p>" if b.level == 0 else f"<ul><li>{E(b.text)}</li></ul>")
        return "".join(parts)
    tag = "ol" if ordered else "ul"
    out = [f'<{tag} class="list-disc pl-6 space-y-1">']
    i = 0
    while i < len(run):
        b = run[i]
        kids = []
        j = i + 1
        while j < len(run) and run[j].level > 0:
            kids.append(run[j])
            j += 1
        inner = "".join(f"<li>{_li(k.text, style)}</li>" for k in kids)
        nested = f"<ul>{inner}</ul>" if kids else ""
        out.append(f'<li class="mb-1"><span>{_li(b.text, style)}</span>{nested}</li>')
        i = j
    out.append(f"</{tag}>")
    return "".join(out)


def _css(rng: random.Random, n: int) -> str:
    rules = []
    for _ in range(n):
        sel = rng.choice([".nav", ".card", ".btn", ".footer a", ".badge", ".hero", ".grid", "h1", "h2", "li"])
        color = f"#{rng.randrange(16**6):06x}"
        rules.append(
            f"{sel}-{rng.randint(1, 999)}{{margin:{rng.randint(0, 24)}px;color:{color};"
            f"padding:{rng.randint(0, 16)}px {rng.randint(0, 16)}px}}"
        )
    return "".join(rules)


def _links(rng: random.Random, n: int, cls: str) -> str:
    out = []
    for _ in range(n):
        sys_ = rng.choice(["cpt4", "hcpcs", "icd10pcs", "cdt"])
        label = f"{rng.choice(APPROACHES).title()} {rng.choice(ACTIONS)}"
        out.append(f'<li class="{cls}"><a href="/code/{sys_}/{rng.randint(10000, 99999)}">{label}</a></li>')
    return "".join(out)


def render_html(page: Page, rng: random.Random, style: str, canonical: str | None) -> str:
    """The page in one of five markup styles, inside site chrome of random weight."""
    out: list[str] = []
    open_section = False
    title = next((b.text for b in page.blocks if b.kind == "title"), "")
    for kind, run in _runs(page.blocks):
        bl = run[0]
        if kind in ("item", "link"):
            out.append(_list_html(run, style, kind))
            continue
        s = E(bl.text)
        if kind == "crumb":
            out.append(f'<nav class="crumbs" aria-label="breadcrumb">{s}</nav>')
        elif kind == "title":
            out.append(
                f'<h1 class="text-2xl font-bold">{s}</h1>'
                if style != "brlines"
                else f'<div class="title"><span>{s}</span></div>'
            )
        elif kind in ("code", "tag"):
            out.append(f'<span class="badge">{s}</span>')
        elif kind == "heading":
            if style == "semantic":
                out.append(f'<h2 class="section-title">{s}</h2>')
            elif style == "bold":
                out.append(f"<p><strong>{s}</strong></p>")
            elif style == "accordion":
                if open_section:
                    out.append("</div></details>")
                out.append(f'<details open><summary>{s}</summary><div class="body">')
                open_section = True
            elif style == "dl":
                out.append("</dd>" if open_section else '<dl class="sections">')
                out.append(f"<dt>{s}</dt><dd>")
                open_section = True
            else:
                out.append(f'<div class="section"><div class="h"><h3>{s}</h3></div></div>')
        elif kind == "sub":
            out.append(f"<h3>{s}</h3>" if style == "semantic" else f"<p><b>{s}</b></p>")
        else:
            out.append(f"<p>{s}</p>")
    if open_section:
        out.append("</div></details>" if style == "accordion" else "</dd></dl>")
    site = SITES[page.site][0]
    head = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{E(title[:70])} | {site}</title>",
    ]
    if canonical:
        head.append(f'<link rel="canonical" href="{E(canonical)}">')
    weight = rng.random() ** 2  # most sites are light, some carry heavy menus and inline CSS
    head.append(f"<style>{_css(rng, 3 + int(weight * 90))}</style>")
    head.append(
        '<script type="application/ld+json">{"@context":"https://schema.org","@type":"MedicalWebPage",'
        f'"name":{json.dumps(title[:70])},"about":"Risks and Complications Summary"}}</script>'
    )
    head.append(
        '<script>window.dataLayer=[];function gtag(){dataLayer.push(arguments)}gtag("js",new Date());'
        'var labels=["Indications","Preparation","Recovery"];</script></head><body>'
    )
    top = (
        f'<header class="site-header"><a class="logo" href="/">{site}</a>'
        '<form action="/search"><input name="q" placeholder="Search all medical codes"></form>'
        f'<nav class="mega"><ul>{_links(rng, 4 + int(weight * 130), "nav-item")}</ul></nav></header>'
        '<div id="cookie" role="dialog">We use cookies to improve your experience. <button>Accept</button>'
        '</div><div class="layout"><main><article class="code-page">'
    )
    aside = f"<aside><h4>Popular codes</h4><ul>{_links(rng, int(weight * 40), 'side')}</ul></aside>"
    foot_links = _links(rng, 4 + int(weight * 60), "f")
    foot = (
        f'</article></main>{aside}</div><footer><ul class="cols">{foot_links}</ul>'
        f"<p>Copyright 2026 {site}. Information only, not medical advice.</p>"
        '<script>console.log("Similar Codes")</script></footer></body></html>'
    )
    return "".join(head) + top + "\n".join(out) + foot


# ----------------------------------------------------------------------------------------------
# the corpus


def _bad(rng: random.Random, i: int) -> tuple[str, bytes]:
    """(file name, bytes) of a bad input: empty, binary, or a page with no code anywhere."""
    k = i % 4
    if k == 0:
        return f"misc_empty_{i:06d}.html", b"" if rng.random() < 0.5 else b"  \n\n "
    if k == 1:
        return f"misc_image_{i:06d}.html", b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(200, 4000))
    if k == 2:
        return f"misc_blob_{i:06d}.txt", b"\x00\x01\x02\x00" * rng.randint(20, 300)
    w = Writer(rng, "Our clinic", rng.choice(PARTS))
    body = "".join(f"<p>{E(w.paragraph())}</p>" for _ in range(rng.randint(2, 6)))
    return f"misc_about_{i:06d}.html", (
        f"<!DOCTYPE html><html><head><title>About us</title></head><body><h1>About our clinic</h1>{body}"
        "</body></html>"
    ).encode()


def _generate(out_dir: Path, n: int, seed: int) -> Counter[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    master = random.Random(seed)
    n_bad = max(1, n // 50) if n >= 20 else 0  # 2% bad inputs
    n_dup = n // 200  # 0.5% second copies of a code
    codes = _codes(master, n - n_bad - n_dup)
    sites = [master.randrange(len(SITES)) for _ in codes]
    url_of = {
        code: _url(sites[j], sys_, code, _title(random.Random(f"{sys_}{code}"), sys_)[0])
        for j, (sys_, code) in enumerate(codes)
    }
    slots: list[tuple[str, int]] = [("page", j) for j in range(len(codes))]
    slots += [("dup", master.randrange(len(codes))) for _ in range(n_dup)]
    slots += [("bad", j) for j in range(n_bad)]
    master.shuffle(slots)
    stats: Counter[str] = Counter()
    for i, (what, j) in enumerate(slots):
        rng = random.Random(seed * 1_000_003 + i)
        if what == "bad":
            name, data = _bad(rng, j)
            (out_dir / name).write_bytes(data)
            stats["bad"] += 1
            continue
        sys_, code = codes[j]
        page = build_page(rng, sys_, code, codes, url_of)
        page.site = sites[j]
        url = url_of[code]
        stem = f"{SITES[page.site][0]}_{FOLDER[sys_]}_{code}" + (f"__copy{i}" if what == "dup" else "")
        x = rng.random()
        if x < 0.62:
            style = HTML_STYLES[rng.randrange(len(HTML_STYLES))]
            canonical = url if rng.random() < 0.8 else None
            data, ext, ctype = render_html(page, rng, style, canonical), "html", "text/html"
        elif x < 0.90:
            style = "bullets" if rng.random() < 0.5 else "dashes"
            data, ext, ctype = render_text(page, rng, style), "txt", "text/plain"
        else:
            style = "markdown"
            data, ext, ctype = render_markdown(page, rng), "md", "text/markdown"
        (out_dir / f"{stem}.{ext}").write_text(data, encoding="utf-8")
        if rng.random() < 0.85:
            meta = {"url": url, "content_type": f"{ctype}; charset=utf-8"}
            if rng.random() < 0.5:
                day = f"2026-0{rng.randint(1, 6)}-{rng.randint(10, 28)}"
                meta["fetched_at"] = f"{day}T12:{rng.randint(10, 59)}:00Z"
            (out_dir / f"{stem}.meta.json").write_text(json.dumps(meta), encoding="utf-8")
            stats["sidecars"] += 1
        stats[f"style:{style}"] += 1
        stats[f"system:{sys_}"] += 1
        stats["duplicates" if what == "dup" else "pages"] += 1
    return stats


def generate(out_dir: Path, n: int, seed: int) -> None:
    """Write ``n`` page files (plus sidecars) into ``out_dir``; the same (n, seed) gives the same bytes."""
    _generate(Path(out_dir), n, seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("-n", type=int, default=1000, help="number of page files (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    stats = _generate(a.out_dir, a.n, a.seed)
    print(json.dumps(dict(sorted(stats.items())), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
