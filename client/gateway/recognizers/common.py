"""Shared pieces of the gateway recognizers: base class, shipped word lists, closed-class vocab.

Everything heavy (gazetteers, lexicon) is read once per process and cached; recognizers are built
once per sanitizer, so nothing here runs on the per-prompt path.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from presidio_analyzer import EntityRecognizer, RecognizerResult

ASSETS = Path(__file__).resolve().parent.parent / "assets"

Hit = tuple[str, int, int, float]  # (entity type, start, end, score)


class GatewayRecognizer(EntityRecognizer):
    """A Presidio recognizer whose detection logic is a plain ``find(text)`` generator.

    Subclasses set ``ENTITIES`` and implement ``find``; Presidio's AnalyzerEngine calls
    ``analyze`` and gets RecognizerResults tagged with this recognizer's name and id.
    """

    ENTITIES: tuple[str, ...] = ()

    def __init__(self, name: str | None = None) -> None:
        super().__init__(supported_entities=list(self.ENTITIES), name=name or type(self).__name__)

    def load(self) -> None:  # assets are loaded (cached) in __init__ of subclasses
        pass

    def find(self, text: str) -> Iterable[Hit]:  # pragma: no cover - abstract
        raise NotImplementedError

    def analyze(self, text, entities, nlp_artifacts=None):  # noqa: D102 - Presidio API
        wanted = set(entities) if entities else None
        meta = {
            RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
        }
        out = []
        for entity_type, start, end, score in self.find(text):
            if end <= start or (wanted is not None and entity_type not in wanted):
                continue
            out.append(RecognizerResult(entity_type, start, end, score, recognition_metadata=dict(meta)))
        return out


# --------------------------------------------------------------------------- shipped gazetteers


@lru_cache(maxsize=None)
def first_names() -> frozenset[str]:
    return _read_lines("first_names.txt") - _function_words()


@lru_cache(maxsize=None)
def last_names() -> frozenset[str]:
    return _read_lines("last_names.txt") - _function_words()


@lru_cache(maxsize=None)
def _function_words() -> frozenset[str]:
    """English stop words ("my", "will", "an" ...) are never taken for names from the gazetteer."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


@dataclass(frozen=True)
class Place:
    name: str
    state: str  # two-letter code of the most populous place of that name
    population: int
    n_states: int  # in how many states a place of this name exists


@lru_cache(maxsize=None)
def us_places() -> dict[str, Place]:
    """Case-folded place name -> Place (detector split of the GeoNames US list)."""
    return _read_places(ASSETS / "us_places.tsv")


def _read_places(path: Path) -> dict[str, Place]:
    places: dict[str, Place] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        name, state, pop, n_states = line.split("\t")
        places[name.casefold()] = Place(name, state, int(pop), int(n_states))
    return places


@lru_cache(maxsize=None)
def lexicon() -> frozenset[str]:
    """Lower-case common English words (public-domain word lists), plus chat vocabulary."""
    with gzip.open(ASSETS / "lexicon.txt.gz", "rt", encoding="utf-8") as fh:
        words = {w for w in fh.read().split("\n") if w}
    words |= EXTRA_COMMON_WORDS
    return frozenset(words)


def _read_lines(filename: str) -> frozenset[str]:
    text = (ASSETS / filename).read_text(encoding="utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip())


_INFLECTIONS = ("'s", "’s", "ies", "es", "s", "ed", "ing", "ly")


@lru_cache(maxsize=1 << 16)  # the same words recur in every prompt; called by every family
def is_common_word(word: str) -> bool:
    """True when ``word`` (any case) is an ordinary English word or a simple inflection of one."""
    low = word.lower()
    lex = lexicon()
    if low in lex:
        return True
    for suffix in _INFLECTIONS:
        if low.endswith(suffix) and len(low) - len(suffix) >= 3:
            stem = low[: -len(suffix)]
            if stem in lex or (suffix == "ies" and stem + "y" in lex) or (
                suffix in ("ed", "ing") and (stem + "e" in lex or (len(stem) > 3 and stem[-1] == stem[-2] and stem[:-1] in lex))
            ):
                return True
    return False


# --------------------------------------------------------------------------- closed-class vocabulary

US_STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
    "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts",
    "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri", "MT": "Montana",
    "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico",
    "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "DC": "District of Columbia", "PR": "Puerto Rico",
}
STATE_NAMES = {v.casefold(): k for k, v in US_STATES.items()}
STATE_CODE_RE = "|".join(sorted(US_STATES, key=len, reverse=True))
STATE_NAME_RE = "|".join(re.escape(v) for v in sorted(US_STATES.values(), key=len, reverse=True))

COUNTRIES = {
    "afghanistan", "albania", "algeria", "argentina", "armenia", "australia", "austria", "bangladesh",
    "belgium", "bolivia", "brazil", "bulgaria", "cambodia", "cameroon", "canada", "chile", "china",
    "colombia", "croatia", "cuba", "czechia", "denmark", "ecuador", "egypt", "england", "ethiopia",
    "europe", "finland", "france", "germany", "ghana", "greece", "guatemala", "haiti", "honduras",
    "hungary", "iceland", "india", "indonesia", "iran", "iraq", "ireland", "israel", "italy",
    "jamaica", "japan", "jordan", "kenya", "korea", "laos", "lebanon", "libya", "lithuania",
    "malaysia", "mexico", "morocco", "nepal", "netherlands", "nigeria", "norway", "pakistan", "peru",
    "philippines", "poland", "portugal", "romania", "russia", "rwanda", "scotland", "senegal",
    "serbia", "singapore", "somalia", "spain", "sudan", "sweden", "switzerland", "syria", "taiwan",
    "thailand", "turkey", "uganda", "ukraine", "uruguay", "usa", "venezuela", "vietnam", "wales",
    "yemen", "zambia", "zimbabwe", "africa", "asia", "america", "antarctica", "oceania", "canada",
    "britain", "uk", "us", "u.s.", "united", "states", "kingdom", "emirates", "arabia", "saudi",
    "south", "north", "east", "west", "central", "latin", "middle",
    "south america", "north america", "latin america", "central america", "middle east",
    "east asia", "southeast asia", "south asia", "west africa", "east africa", "south africa",
    "north africa", "north korea", "south korea", "new zealand", "united states",
    "united kingdom", "saudi arabia", "costa rica", "puerto rico", "el salvador", "sri lanka",
    "hong kong", "papua new guinea", "new guinea", "dominican republic", "czech republic",
    "united arab emirates", "ivory coast", "south sudan", "western europe", "eastern europe",
    "new england", "midwest", "pacific northwest", "deep south", "west coast", "east coast",
}

MONTHS = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec",
}
WEEKDAYS = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mon", "tue",
    "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun", "today", "tomorrow", "yesterday",
}

# Capitalized words that are not personal identifiers: nationalities, languages, religions,
# holidays, medical eponyms, common drug names, programs, brands people mention in prompts.
NON_PII_CAPITALIZED = {
    # pronoun / chat
    "i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "hi", "hey", "hello", "thanks", "thank", "pls",
    "please", "yes", "no", "yeah", "nope", "btw", "fyi", "asap", "lol", "omg", "re", "fw", "fwd",
    "dear", "sincerely", "regards", "cheers", "best",
    # nationalities / languages / religions / groups
    "english", "spanish", "french", "german", "italian", "portuguese", "chinese", "mandarin",
    "cantonese", "japanese", "korean", "vietnamese", "tagalog", "filipino", "hindi", "urdu",
    "bengali", "punjabi", "arabic", "hebrew", "russian", "ukrainian", "polish", "greek", "turkish",
    "persian", "farsi", "swahili", "somali", "amharic", "haitian", "creole", "american", "mexican",
    "canadian", "african", "asian", "hispanic", "latino", "latina", "latinx", "caucasian", "black",
    "white", "native", "indian", "european", "irish", "scottish", "british", "dutch", "swedish",
    "norwegian", "danish", "finnish", "christian", "catholic", "protestant", "baptist", "methodist",
    "lutheran", "jewish", "muslim", "islamic", "hindu", "buddhist", "sikh", "mormon", "orthodox",
    "god", "jesus", "christ", "bible", "quran", "torah", "lord", "allah",
    # holidays / seasons
    "christmas", "easter", "thanksgiving", "halloween", "hanukkah", "ramadan", "passover", "diwali",
    "kwanzaa", "memorial", "labor", "independence", "veterans", "valentine", "valentine's",
    "new", "year's", "eve", "mother's", "father's", "spring", "summer", "fall", "autumn", "winter",
    # medical eponyms and named conditions / tests
    "alzheimer", "alzheimer's", "parkinson", "parkinson's", "crohn", "crohn's", "hodgkin",
    "hodgkin's", "huntington", "huntington's", "cushing", "cushing's", "addison", "addison's",
    "graves", "graves'", "hashimoto", "hashimoto's", "asperger", "asperger's", "tourette",
    "tourette's", "raynaud", "raynaud's", "sjogren", "sjogren's", "sjögren's", "guillain", "barre",
    "barré", "epstein", "barr", "kaposi", "meniere", "meniere's", "ménière's", "bell's", "lyme",
    "down", "marfan", "ehlers", "danlos", "wilson's", "barrett's", "paget's", "lou", "gehrig's",
    "achilles", "kawasaki", "legionnaires", "tay", "sachs", "turner", "klinefelter", "apgar",
    "glasgow", "babinski", "heimlich", "papanicolaou", "pap", "gram", "celsius", "fahrenheit",
    "covid", "covid-19", "coronavirus", "omicron", "delta", "sars", "sars-cov-2", "mers", "ebola",
    "zika", "west", "nile", "rocky", "mountain",
    # drugs (brand and generic names people capitalize)
    "tylenol", "advil", "motrin", "aleve", "aspirin", "ibuprofen", "acetaminophen", "naproxen",
    "benadryl", "claritin", "zyrtec", "allegra", "flonase", "sudafed", "mucinex", "nyquil",
    "dayquil", "pepcid", "prilosec", "nexium", "zantac", "tums", "imodium", "pepto", "bismol",
    "miralax", "colace", "dulcolax", "lipitor", "crestor", "zocor", "pravachol", "plavix",
    "eliquis", "xarelto", "coumadin", "warfarin", "heparin", "lovenox", "metformin", "glucophage",
    "januvia", "jardiance", "farxiga", "ozempic", "wegovy", "mounjaro", "zepbound", "trulicity",
    "victoza", "lantus", "humalog", "novolog", "levemir", "tresiba", "insulin", "synthroid",
    "levothyroxine", "lisinopril", "losartan", "norvasc", "amlodipine", "metoprolol", "lopressor",
    "toprol", "coreg", "carvedilol", "lasix", "furosemide", "hydrochlorothiazide", "spironolactone",
    "entresto", "digoxin", "albuterol", "ventolin", "proair", "advair", "symbicort", "spiriva",
    "singulair", "prednisone", "medrol", "amoxicillin", "augmentin", "azithromycin", "zithromax",
    "z-pak", "keflex", "cipro", "levaquin", "bactrim", "doxycycline", "flagyl", "diflucan",
    "valtrex", "tamiflu", "paxlovid", "zoloft", "sertraline", "prozac", "fluoxetine", "lexapro",
    "escitalopram", "celexa", "paxil", "wellbutrin", "bupropion", "effexor", "cymbalta",
    "trazodone", "xanax", "ativan", "klonopin", "valium", "ambien", "adderall", "ritalin",
    "vyvanse", "concerta", "abilify", "seroquel", "risperdal", "zyprexa", "lithium", "lamictal",
    "depakote", "keppra", "dilantin", "tegretol", "topamax", "neurontin", "gabapentin", "lyrica",
    "percocet", "vicodin", "norco", "oxycodone", "oxycontin", "tramadol", "ultram", "morphine",
    "dilaudid", "fentanyl", "suboxone", "narcan", "naloxone", "methadone", "flexeril", "robaxin",
    "humira", "enbrel", "remicade", "stelara", "dupixent", "keytruda", "opdivo", "herceptin",
    "tamoxifen", "arimidex", "letrozole", "methotrexate", "plaquenil", "viagra", "cialis",
    "flomax", "proscar", "finasteride", "botox", "epipen", "epinephrine", "benzonatate",
    "tessalon", "zofran", "ondansetron", "reglan", "phenergan", "compazine", "meclizine",
    "antivert", "vitamin", "biotin", "melatonin", "zinc", "omega", "fish", "oil",
    "pfizer", "moderna", "novavax", "shingrix", "gardasil", "prevnar", "pneumovax",
    "tdap", "mmr", "flu",
    # programs, payers, institutions, roles people capitalize
    "medicare", "medicaid", "medigap", "tricare", "obamacare", "aca", "cobra", "hipaa", "fmla",
    "ssi", "ssdi", "snap", "wic", "va", "cdc", "fda", "nih", "who", "ama", "aha", "cms", "irs",
    "dmv", "usps", "fedex", "ups", "aetna", "cigna", "humana", "kaiser", "anthem", "blue", "cross",
    "shield", "united", "healthcare", "unitedhealthcare", "bcbs", "emergency", "department",
    "urgent", "care", "intensive", "unit", "icu", "er", "ed", "or", "pacu", "nicu", "picu",
    "internal", "medicine", "family", "cardiology", "oncology", "neurology", "pediatrics",
    "radiology", "surgery", "orthopedics", "psychiatry", "dermatology", "physical", "therapy",
    "occupational", "hospice", "nurse", "practitioner", "doctor", "dr", "md", "do", "rn", "np",
    "pa", "phd", "dds", "pharmd", "lpn", "cna", "ems", "emt",
    # tech / brands / apps
    "google", "gmail", "youtube", "facebook", "instagram", "whatsapp", "twitter", "tiktok",
    "snapchat", "linkedin", "reddit", "zoom", "teams", "skype", "slack", "outlook", "excel",
    "word", "powerpoint", "microsoft", "windows", "apple", "iphone", "ipad", "mac", "macbook",
    "android", "samsung", "galaxy", "pixel", "fitbit", "garmin", "alexa", "siri", "chatgpt",
    "openai", "amazon", "walmart", "target", "costco", "cvs", "walgreens", "rite", "aid",
    "uber", "lyft", "venmo", "paypal", "zelle", "netflix", "spotify", "mychart", "epic",
    "python", "java", "javascript", "linux", "wifi", "bluetooth", "internet", "email", "pdf",
    # misc capitalized function words in headings / sentence-case
    "note", "notes", "subject", "summary", "assessment", "plan", "history", "diagnosis",
    "impression", "medications", "allergies", "vitals", "labs", "follow", "up", "chief",
    "complaint", "hpi", "ros", "pmh", "psh", "fh", "sh", "exam", "objective", "subjective",
    "mr", "mrs", "ms", "miss", "mx", "prof", "sir", "madam", "ma'am",
}

EXTRA_COMMON_WORDS = {
    "ok", "okay", "hi", "hey", "hello", "thanks", "pls", "plz", "yeah", "yep", "nope", "btw", "fyi",
    "asap", "lol", "omg", "email", "emails", "emailed", "texted", "online", "website", "app", "apps",
    "covid", "telehealth", "ultrasound", "ekg", "ecg", "mri", "scan", "scans", "refill", "refills",
    "copay", "copays", "deductible", "meds", "med", "followup", "checkup", "urgent", "wanna",
    "gonna", "gotta", "kinda", "sorta", "hmm", "ugh", "wow", "anyway", "anyways", "cannot", "won't",
    "can't", "don't", "doesn't", "didn't", "isn't", "wasn't", "aren't", "i'm", "i've", "i'd", "i'll",
    "we're", "they're", "you're", "it's", "that's", "what's", "let's", "here's", "there's",
    "could", "would", "should", "also", "however", "although", "though", "since", "because",
    "yesterday", "today", "tonight", "tomorrow", "lately", "recently", "currently", "finally",
    "unfortunately", "hopefully", "basically", "honestly", "actually", "apparently", "overall",
}

TITLES = {
    "dr", "dr.", "doctor", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "miss", "mx", "mx.", "prof",
    "prof.", "professor", "nurse", "sister", "brother", "rev", "rev.", "reverend", "fr", "fr.",
    "father", "pastor", "rabbi", "imam", "capt", "capt.", "captain", "sgt", "sgt.", "sergeant",
    "officer", "judge", "coach", "aunt", "auntie", "uncle", "grandma", "grandpa", "granny",
    "nana", "papa", "mama", "mom", "dad", "sir", "dame", "lady", "lord", "mister",
    "madam", "señor", "señora", "sra", "sr", "dra", "herr", "frau", "mme", "mlle", "m.",
}

# Words that, right before a capitalized (or, for the strong ones, lower-case) token, mark a person.
PERSON_CUES = {
    "named", "name", "name's", "called", "dear", "patient", "pt", "pt.", "client", "resident",
    "son", "daughter", "wife", "husband", "partner", "boyfriend", "girlfriend", "fiance", "fiancé",
    "fiancee", "fiancée", "spouse", "mom", "mother", "dad", "father", "brother", "sister", "stepson",
    "stepdaughter", "stepmom", "stepdad", "grandson", "granddaughter", "grandmother",
    "grandfather", "grandma", "grandpa", "aunt", "uncle", "cousin", "nephew", "niece", "friend",
    "bestie", "buddy", "coworker", "co-worker", "colleague", "boss", "manager", "supervisor",
    "neighbor", "neighbour", "landlord", "landlady", "roommate", "flatmate", "tenant", "teacher",
    "student", "doctor", "physician", "surgeon", "nurse", "therapist", "counselor", "psychiatrist",
    "psychologist", "dentist", "pharmacist", "caregiver", "carer", "baby", "child", "kid",
    "toddler", "customer", "attorney", "lawyer", "pastor", "coach", "tutor", "babysitter", "nanny",
    "ex", "pcp", "provider", "oncologist", "cardiologist", "neurologist", "dermatologist",
    "pediatrician", "ob", "obgyn", "midwife", "doula", "paramedic", "attending", "intern",
    "signed", "sincerely", "regards", "love", "cheers", "thanks", "thank", "hi", "hello", "hey",
    "cc", "cc:", "attn", "attn:", "fellow", "mentor", "classmate", "teammate", "host", "guest",
    "employee", "employer", "contractor", "plumber", "electrician", "realtor", "agent",
    "adviser", "advisor", "caseworker", "worker", "officer", "dentist", "vet", "veterinarian",
}
# Words that open place names and must not be stripped as non-identifying ("East Kristin",
# "New Ulm", "Port Hadley", "San Benito").
PLACE_PREFIXES = {
    "north", "south", "east", "west", "new", "port", "fort", "ft", "lake", "mount", "mt", "saint",
    "st", "san", "santa", "los", "las", "el", "la", "le", "glen", "upper", "lower", "old", "little",
    "great", "grand", "palm", "cape", "point", "bay", "west", "center", "royal", "spring", "twin",
}
# Words after which an unknown capitalized token is a place rather than a person.
PLACE_CUES = {
    "visit", "in", "near", "from", "to", "at", "outside", "around", "visiting", "visited", "moved",
    "live", "lives", "living", "lived", "born", "raised", "based", "located", "downtown",
    "town", "city", "village", "hometown", "toward", "towards", "via", "through", "across",
}
STRONG_PLACE_CUES = {
    "visit", "in", "near", "outside", "visiting", "visited", "downtown", "hometown", "around", "town",
    "city", "village", "lives", "live", "living", "lived", "born", "raised", "based", "located",
    "moved",
}
# Verbs/particles that, right after an unknown capitalized token, make it a person.
PERSON_FOLLOWERS = {
    "family", "household", "residence", "said", "says", "told", "tells", "asked", "asks", "called", "calls", "texted", "texts",
    "emailed", "wrote", "writes", "wants", "wanted", "needs", "needed", "thinks", "thought",
    "mentioned", "came", "comes", "went", "goes", "left", "took", "takes", "gave", "gives",
    "got", "gets", "has", "had", "is", "was", "will", "would", "can", "could", "should", "and",
    "who", "sent", "sends", "replied", "answered", "forgot", "forgets", "started", "stopped",
    "feels", "felt", "looks", "looked", "seems", "seemed", "knows", "knew", "works", "worked",
    "lives", "lived", "died", "passed", "says:", "keeps", "kept", "loves", "hates", "likes",
    "agreed", "refused", "insists", "insisted", "prescribed", "recommended", "suggested",
    "diagnosed", "referred", "ordered", "saw", "sees", "visited", "visits", "complained",
    "complains", "reports", "reported", "denies", "denied", "presents", "presented", "underwent",
    "tested", "turned", "'s", "’s", "&",
}
FACILITY_WORDS = {
    "hospital", "clinic", "clinics", "infirmary", "hospice", "pharmacy", "university", "college",
    "school", "academy", "church", "mosque", "synagogue", "temple", "institute", "sanatorium",
    "practice", "associates", "healthcare", "medical", "health", "center", "centre", "home",
    "homes", "lodge", "manor", "residence", "rehab", "rehabilitation", "nursing", "ward",
}
NAME_PARTICLES = {
    "van", "von", "de", "da", "del", "della", "di", "du", "la", "le", "bin", "ibn", "al", "el",
    "der", "den", "ter", "dos", "das", "y", "zu", "st", "st.", "mac", "ben", "bint", "abu",
}
# "St." before a capitalized word starts a saint / street name rather than ending a sentence.
ABBREVIATIONS = {
    "dr", "mr", "mrs", "ms", "mx", "prof", "st", "mt", "ft", "jr", "sr", "vs", "no", "rev", "fr",
    "capt", "sgt", "lt", "col", "gen", "gov", "sen", "rep", "approx", "dept", "inc", "ltd", "co",
    "e.g", "i.e", "etc", "pt", "apt", "ste", "ave", "blvd", "rd", "ln", "hwy", "dob", "ref",
}

# Drug-name endings (INN stems and common brand endings): an unknown capitalized word with one of
# these is a medication, not a person.
DRUG_SUFFIXES = (
    "mab", "tinib", "pril", "olol", "statin", "azole", "cillin", "mycin", "cycline", "floxacin",
    "dipine", "sartan", "gliptin", "gliflozin", "prazole", "dronate", "triptan", "afil", "oxetine",
    "azepam", "zolam", "codone", "morphone", "thiazide", "semide", "parin", "xaban", "gatran",
    "lukast", "terol", "sonide", "profen", "fenac", "coxib", "tadine", "zosin", "glitazone",
    "formin", "lutamide", "platin", "rubicin", "taxel", "trexate", "peridol", "triptyline",
    "pramine", "faxine", "vudine", "navir", "previr", "buvir", "ciclovir", "conazole", "fungin",
    "setron", "prazine", "glutide", "tirzepatide", "vastatin",
)
