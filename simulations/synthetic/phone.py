"""Phone profile: each client is one user with a personal texting style.

Message *content* comes from topic sentence templates (shared with the public corpus, written in
neutral standard English). What makes a user's corpus non-IID is the :class:`Persona`: favourite
topics, casing, slang and abbreviations, emoji habits, punctuation, greetings and sign-offs,
elongated words, double-texting and code-switching into another language.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from simulations.synthetic.common import Filler, Record, Slot, locate_spans
from simulations.synthetic.pii import DATE_STYLES, PHONE_STYLES, PIIFactory


def _num(lo: int, hi: int, fmt: str = "{}"):
    return lambda r: fmt.format(r.randint(lo, hi))


MESSAGE_VOCAB: dict[str, Slot] = {
    "time": ("7", "7:30", "8", "noon", "6pm", "around 5", "9ish", "after work", "10:15", "lunch"),
    "day": ("tomorrow", "tonight", "Friday", "Saturday", "Sunday", "next week", "this weekend", "Monday"),
    "place": ("the usual place", "the coffee shop", "the park", "the mall", "downtown", "the station", "the gym", "the library", "the taco place"),
    "food": ("pizza", "sushi", "tacos", "ramen", "burgers", "pho", "curry", "pasta", "dumplings", "salad"),
    "feeling": ("tired", "so happy", "stressed", "bored", "hungry", "excited", "exhausted", "chill", "nervous"),
    "excuse": ("traffic is insane", "the bus is late", "my meeting ran over", "I lost my keys", "the train is delayed", "I overslept"),
    "n": _num(2, 12),
    "minutes": ("5", "10", "15", "20", "30"),
    "weather": ("raining", "freezing", "so hot", "snowing", "really windy", "beautiful out"),
    "show": ("the new season", "that documentary", "the finale", "the cooking show", "the detective series"),
    "team": ("United", "the Lakers", "the Eagles", "City", "Barcelona", "the Yankees", "the Chiefs", "Arsenal"),
    "game": ("Zelda", "Elden Ring", "Minecraft", "Fortnite", "Valorant", "FIFA", "Mario Kart", "Baldur's Gate"),
    "dish": ("lasagna", "banana bread", "chicken curry", "sourdough", "stir fry", "chili", "lemon cake", "dumplings"),
    "distance": ("5k", "10k", "half marathon", "15k", "marathon", "trail race"),
    "coin": ("bitcoin", "eth", "solana", "dogecoin"),
    "group": ("BTS", "BLACKPINK", "Stray Kids", "NewJeans", "TWICE", "SEVENTEEN"),
    "plant": ("tomatoes", "basil", "the roses", "my succulents", "the peppers", "the monstera"),
    "city": ("Lisbon", "Tokyo", "Mexico City", "Rome", "Seoul", "Montreal", "Bangkok", "Berlin"),
    "pet": ("the dog", "the cat", "my cat", "the puppy", "the kitten", "my dog"),
    "anime": ("One Piece", "Jujutsu Kaisen", "Frieren", "Attack on Titan", "Spy x Family", "Demon Slayer"),
    "artist": ("Taylor Swift", "Bad Bunny", "Beyonce", "the Weeknd", "Billie Eilish", "Drake", "SZA"),
    "movie": ("the new Marvel one", "Dune", "that horror movie", "the Pixar movie", "Oppenheimer", "the rom com"),
    "trail": ("the ridge trail", "the lake loop", "the canyon hike", "Eagle Peak", "the waterfall trail"),
    "item": ("jacket", "sneakers", "dress", "jeans", "hoodie", "sunglasses", "coat", "bag"),
    "car_part": ("the brakes", "the battery", "a tire", "the AC", "the oil"),
    "subject": ("chem", "calc", "history", "bio", "econ", "stats"),
    "workout": ("leg day", "a spin class", "yoga", "a HIIT class", "chest and back", "pilates"),
    "kid": ("the kids", "my son", "my daughter", "the baby", "the twins"),
    "work_thing": ("the deadline", "the client call", "my performance review", "the quarterly report", "the standup", "the presentation"),
}

# Topic -> neutral sentence templates.
TOPICS: dict[str, tuple[str, ...]] = {
    "plans": (
        "Are we still on for {day}?",
        "Want to meet at {place} around {time}?",
        "I can pick you up at {time}.",
        "Let's grab {food} {day}.",
        "Can we push it to {time} instead?",
        "I'm running late, {excuse}.",
        "I'll be there in {minutes} minutes.",
        "Who else is coming {day}?",
    ),
    "checkin": (
        "How was your day?",
        "I'm so {feeling} right now.",
        "Did you get home okay?",
        "Thanks again for yesterday, it was really fun.",
        "Just woke up, what did I miss?",
        "It's {weather} here.",
        "Are you feeling better today?",
        "Call me when you get a chance.",
    ),
    "food": (
        "I'm craving {food} so badly.",
        "We ordered {food} again.",
        "That new place downtown has the best {food}.",
        "Should we get {food} or {food2}?",
        "I've had {food} three times this week.",
    ),
    "football": (
        "Did you see the {team} game last night?",
        "{team} looked terrible in the second half.",
        "That last minute goal was unreal.",
        "Are you watching the match {day}?",
        "I can't believe the ref missed that.",
        "My fantasy team is falling apart.",
    ),
    "gaming": (
        "Are you getting on {game} tonight?",
        "I finally beat the boss in {game}.",
        "The new update for {game} is so good.",
        "I've been playing {game} for {n} hours straight.",
        "My internet keeps lagging in ranked.",
        "Want to squad up later?",
    ),
    "cooking": (
        "I'm making {dish} tonight.",
        "The {dish} came out perfect this time.",
        "Can you send me that {dish} recipe?",
        "I burned the {dish} again.",
        "Trying a new {dish} recipe from my grandma.",
    ),
    "running": (
        "Just finished a {distance} run.",
        "My legs are dead after that {distance}.",
        "Signed up for a {distance} in the spring.",
        "Want to run {day} morning?",
        "New personal best on the {distance} today.",
    ),
    "crypto": (
        "{coin} is pumping again.",
        "I should have sold my {coin} last week.",
        "Have you seen the {coin} chart today?",
        "I'm holding {coin} no matter what.",
        "The market is so volatile right now.",
    ),
    "kpop": (
        "The new {group} comeback is everything.",
        "Did you get tickets for {group}?",
        "I've watched the {group} MV like {n} times.",
        "The {group} concert lineup just dropped.",
        "My bias in {group} changes every week.",
    ),
    "gardening": (
        "The {plant} are finally growing.",
        "Something keeps eating {plant}.",
        "I repotted {plant} this morning.",
        "The frost killed {plant}.",
        "Harvested so many {plant} today.",
    ),
    "travel": (
        "Just landed in {city}.",
        "Flights to {city} are so cheap right now.",
        "We should plan a trip to {city}.",
        "My flight got delayed {n} hours.",
        "Packing for {city} and I have nothing to wear.",
    ),
    "work": (
        "I have {work_thing} {day}.",
        "My boss moved {work_thing} again.",
        "Working late because of {work_thing}.",
        "So glad {work_thing} is over.",
        "I have back to back meetings all day.",
    ),
    "kids": (
        "{kid} won't go to sleep.",
        "Picking up {kid} from school at {time}.",
        "{kid} has a fever so I'm staying home.",
        "{kid} said the funniest thing today.",
        "Can you watch {kid} on {day}?",
    ),
    "pets": (
        "{pet} just knocked my coffee off the table.",
        "Taking {pet} to the vet {day}.",
        "{pet} is sleeping on my laptop again.",
        "Look at {pet}, so cute.",
        "{pet} ate my sock.",
    ),
    "anime": (
        "The new {anime} episode was insane.",
        "Have you started {anime} yet?",
        "I stayed up all night watching {anime}.",
        "That {anime} ending made me cry.",
    ),
    "music": (
        "The new {artist} album is on repeat.",
        "Got tickets to see {artist}.",
        "This {artist} song is stuck in my head.",
        "Are you going to the festival {day}?",
    ),
    "hiking": (
        "Hiking {trail} {day}, want to come?",
        "The view from {trail} was amazing.",
        "My boots are destroyed after {trail}.",
        "Saw a bear on {trail}.",
    ),
    "movies": (
        "Have you seen {movie} yet?",
        "{movie} was way better than I expected.",
        "Want to see {movie} {day}?",
        "We watched {show} all weekend.",
    ),
    "fashion": (
        "I bought a new {item} I definitely didn't need.",
        "Does this {item} look okay?",
        "There's a huge sale at the mall right now.",
        "Returning the {item}, it doesn't fit.",
        "Found the perfect {item} for the wedding.",
    ),
    "cars": (
        "The mechanic says I need to replace {car_part}.",
        "My car is making that noise again.",
        "Gas prices are insane right now.",
        "Finally fixed {car_part} myself.",
    ),
    "school": (
        "I have a {subject} exam {day}.",
        "Can you send me the {subject} notes?",
        "I'm failing {subject} lol.",
        "The {subject} homework is impossible.",
    ),
    "fitness": (
        "Just did {workout}, I can't feel my legs.",
        "Gym at {time}?",
        "Skipping {workout} today, too {feeling}.",
        "New class schedule has {workout} on {day}.",
    ),
}
TOPIC_NAMES: tuple[str, ...] = tuple(t for t in TOPICS if t not in ("plans", "checkin"))

# Identifier fragments for messages ({..} filled by PIIFactory).
PII_FRAGMENTS: tuple[str, ...] = (
    "My new number is {phone}.",
    "Text {name} at {phone}.",
    "Send it to {email}.",
    "The address is {address}.",
    "{name} is coming too.",
    "Party at {first}'s place on {date}.",
    "Can you send the invite to {email}?",
    "We're at {address}.",
    "It's {first}'s birthday on {date}.",
    "Call me at {phone} when you land.",
    "My email changed to {email}.",
    "My appointment is on {date}.",
    "Tell {name} I said hi.",
    "This is {name}, I got a new phone.",
)

# --- persona ingredients -----------------------------------------------------------------------
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "you": ("u", "ya", "yu"),
    "your": ("ur", "yr"),
    "you're": ("ur", "youre"),
    "are": ("r",),
    "please": ("pls", "plz", "pleaseee"),
    "thanks": ("thx", "ty", "tysm"),
    "okay": ("ok", "k", "okie", "kk"),
    "tonight": ("2nite", "tn"),
    "tomorrow": ("tmrw", "tmr", "2moro"),
    "because": ("bc", "cuz", "coz"),
    "going": ("goin",),
    "want": ("wanna",),
    "to": ("2",),
    "for": ("4",),
    "really": ("rly", "rlly"),
    "probably": ("prob", "prolly"),
    "people": ("ppl",),
    "something": ("smth", "sth"),
    "what": ("wat", "wut"),
    "right": ("rn",),
    "minutes": ("mins",),
    "before": ("b4",),
    "see": ("c",),
    "be": ("b",),
    "with": ("w/", "wit"),
    "love": ("luv",),
    "great": ("gr8",),
    "later": ("l8r", "ltr"),
    "I'm": ("Im", "ima"),
    "don't": ("dont", "dnt"),
    "know": ("kno", "no"),
}
SLANG = ("ngl", "tbh", "fr", "lowkey", "highkey", "deadass", "bruh", "fam", "bet", "no cap", "istg", "smh", "imo", "idk", "iykyk", "omg", "wtf", "yikes", "literally", "vibes")
LAUGHS = ("lol", "lmao", "haha", "hahaha", "lmaooo", "LOL", "hehe", "😂", "💀", "rofl", "ahahah")
EMOJI_POOLS = (
    ("😂", "🤣", "💀", "😭"),
    ("❤️", "😍", "🥰", "💕", "😘"),
    ("👍", "👌", "🙏", "✌️"),
    ("🔥", "💯", "🙌", "✨"),
    ("😅", "🙃", "🤷", "😬"),
    ("🎉", "🥳", "🍕", "🍻"),
    ("⚽", "🏆", "🎮", "🏃"),
    ("🌱", "🌸", "☀️", "🌧️"),
    ("🐶", "🐱", "🐾"),
    (":)", ";)", ":D", "xD", ":P", "<3"),
)
GREETINGS = ("hey", "hi", "yo", "heyy", "hiii", "morning", "hello", "sup", "oi", "hey hey", "good morning", "hiya")
SIGNOFFS = ("ttyl", "xx", "xoxo", "cya", "later", "love u", "peace", "talk soon", "byeee", "nite", "gn", "cheers", "- sent from my phone", "k bye")
END_PUNCT = ("", "", ".", "!", "!!", "!!!", "...", "..", " :)", "?!")
ELONGATE = {"so": "sooo", "yes": "yesss", "no": "nooo", "omg": "omggg", "please": "pleaseee", "love": "loveee", "what": "whattt", "wait": "waittt", "nice": "niceee", "hey": "heyyy", "okay": "okayyy", "yay": "yayyy", "good": "goood"}

# Language quirks: (greetings, interjections, laughs, sign-offs). Some in non-Latin scripts.
LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "es": (("hola", "oye", "buenas"), ("vale", "qué onda", "bueno", "porfa", "claro", "ay"), ("jajaja", "jaja", "jsjs"), ("besos", "nos vemos", "chao")),
    "fr": (("coucou", "salut", "bonjour"), ("bref", "genre", "c'est ça", "trop bien", "grave"), ("mdr", "ptdr", "hihi"), ("bisous", "à plus", "bonne nuit")),
    "de": (("hallo", "moin", "servus"), ("na ja", "genau", "krass", "egal", "doch"), ("haha", "xD"), ("tschüss", "lg", "bis dann")),
    "hi": (("arre", "oye", "namaste"), ("yaar", "accha", "chalo", "bas", "theek hai"), ("hahaha", "lol yaar"), ("bye yaar", "chalo bye")),
    "pt": (("oi", "e aí", "olá"), ("beleza", "nossa", "tipo", "valeu", "saudade"), ("kkkk", "kkkkk", "rsrs"), ("beijos", "falou", "tchau")),
    "ja": (("おはよう", "やあ", "こんにちは"), ("まじで", "やばい", "なるほど", "ありがとう", "おつかれ"), ("www", "笑", "草"), ("またね", "じゃあね", "おやすみ")),
    "ru": (("привет", "хай", "здорово"), ("короче", "ну", "давай", "спасибо", "блин"), ("ахах", "хаха", ")))"), ("пока", "до связи", "целую")),
    "ko": (("안녕", "하이", "야"), ("대박", "진짜", "화이팅", "헐", "고마워"), ("ㅋㅋㅋ", "ㅋㅋㅋㅋ", "ㅎㅎ"), ("잘자", "안녕", "bye~")),
    "ar": (("marhaba", "salam", "مرحبا"), ("yalla", "inshallah", "habibi", "wallah", "إن شاء الله"), ("hhhh", "ههههه"), ("bye habibi", "مع السلامة")),
    "zh": (("你好", "嗨", "hi"), ("加油", "好的", "没事", "真的吗", "谢谢"), ("哈哈哈", "233", "hhh"), ("拜拜", "晚安", "88")),
}


@dataclass(frozen=True)
class Persona:
    topics: tuple[str, ...]
    topic_weights: tuple[float, ...]
    lowercase: bool
    no_apostrophes: bool
    abbreviations: dict[str, str]
    abbreviation_rate: float
    slang: tuple[str, ...]
    slang_rate: float
    laugh: str
    laugh_rate: float
    emoji: tuple[str, ...]
    emoji_rate: float
    emoji_repeat: int
    end_punct: str
    question_punct: str
    greetings: tuple[str, ...]
    greeting_rate: float
    signoffs: tuple[str, ...]
    signoff_rate: float
    elongate_rate: float
    caps_rate: float
    double_texter: bool
    language: str | None
    language_rate: float

    @classmethod
    def random(cls, rng: random.Random) -> Persona:
        n_topics = rng.randint(2, 4)
        topics = tuple(rng.sample(TOPIC_NAMES, n_topics))
        weights = tuple(round(rng.uniform(1.0, 4.0), 3) for _ in topics)
        language = rng.choice(tuple(LANGUAGES)) if rng.random() < 0.45 else None
        abbr_keys = rng.sample(sorted(ABBREVIATIONS), rng.randint(0, len(ABBREVIATIONS)))
        emoji_pool = tuple(e for pool in rng.sample(EMOJI_POOLS, rng.randint(1, 3)) for e in pool)
        emoji = tuple(rng.sample(emoji_pool, min(len(emoji_pool), rng.randint(1, 4))))
        greetings = tuple(rng.sample(GREETINGS, rng.randint(1, 3)))
        signoffs = tuple(rng.sample(SIGNOFFS, rng.randint(1, 2)))
        laugh = rng.choice(LAUGHS)
        if language is not None:
            lang_greet, _, lang_laughs, lang_bye = LANGUAGES[language]
            if rng.random() < 0.6:
                laugh = rng.choice(lang_laughs)
            greetings = greetings + (rng.choice(lang_greet),)
            signoffs = signoffs + (rng.choice(lang_bye),)
        return cls(
            topics=topics,
            topic_weights=weights,
            lowercase=rng.random() < 0.45,
            no_apostrophes=rng.random() < 0.4,
            abbreviations={k: rng.choice(ABBREVIATIONS[k]) for k in abbr_keys},
            abbreviation_rate=rng.choice((0.0, 0.3, 0.6, 0.9)),
            slang=tuple(rng.sample(SLANG, rng.randint(1, 4))),
            slang_rate=rng.choice((0.0, 0.1, 0.25, 0.4)),
            laugh=laugh,
            laugh_rate=rng.choice((0.0, 0.1, 0.25, 0.45)),
            emoji=emoji,
            emoji_rate=rng.choice((0.0, 0.15, 0.35, 0.6, 0.85)),
            emoji_repeat=rng.choice((1, 1, 2, 3)),
            end_punct=rng.choice(END_PUNCT),
            question_punct=rng.choice(("?", "?", "??", "???", "")),
            greetings=greetings,
            greeting_rate=rng.choice((0.0, 0.2, 0.5, 0.8)),
            signoffs=signoffs,
            signoff_rate=rng.choice((0.0, 0.1, 0.3, 0.6)),
            elongate_rate=rng.choice((0.0, 0.0, 0.3, 0.7)),
            caps_rate=rng.choice((0.0, 0.0, 0.03, 0.08)),
            double_texter=rng.random() < 0.3,
            language=language,
            language_rate=rng.choice((0.2, 0.4, 0.6)) if language else 0.0,
        )

    @classmethod
    def neutral(cls) -> Persona:
        """The 'public' style: standard spelling, casing and punctuation, rare emoji."""
        return cls(
            topics=TOPIC_NAMES,
            topic_weights=tuple(1.0 for _ in TOPIC_NAMES),
            lowercase=False,
            no_apostrophes=False,
            abbreviations={},
            abbreviation_rate=0.0,
            slang=(),
            slang_rate=0.0,
            laugh="haha",
            laugh_rate=0.03,
            emoji=("🙂", "👍", "😊", "❤️", "😂", "🎉", "🙏"),
            emoji_rate=0.08,
            emoji_repeat=1,
            end_punct=".",
            question_punct="?",
            greetings=("Hi!", "Hey!", "Hello!", "Good morning!"),
            greeting_rate=0.2,
            signoffs=("Thanks!", "See you soon.", "Talk later.", "Cheers!"),
            signoff_rate=0.1,
            elongate_rate=0.0,
            caps_rate=0.0,
            double_texter=False,
            language=None,
            language_rate=0.0,
        )


_WORD_RE = re.compile(r"^([\"'(]*)([A-Za-z']+)([^A-Za-z']*)$")


class PhoneGenerator:
    """Generates the messages of one user (client). One instance = one client stream."""

    def __init__(self, persona: Persona, rng: random.Random, *, topic_share: float = 0.8) -> None:
        self.persona = persona
        self.rng = rng
        self.topic_share = topic_share
        self.filler = Filler(rng, MESSAGE_VOCAB)
        self.pii = PIIFactory(rng, phone_style=rng.choice(PHONE_STYLES), date_style=rng.choice(DATE_STYLES))

    # -- style ------------------------------------------------------------------------------------
    def _style_word(self, word: str) -> str:
        p, rng = self.persona, self.rng
        if "{" in word:
            return word
        m = _WORD_RE.match(word)
        if not m:
            return word
        pre, core, post = m.groups()
        key = core if core in ABBREVIATIONS else core.lower()
        if key in p.abbreviations and rng.random() < p.abbreviation_rate:
            core = p.abbreviations[key]
        elif core.lower() in ELONGATE and rng.random() < p.elongate_rate:
            core = ELONGATE[core.lower()]
        if p.no_apostrophes:
            core = core.replace("'", "")
        if p.caps_rate and len(core) > 2 and rng.random() < p.caps_rate:
            core = core.upper()
        return pre + core + post

    def _style_sentence(self, sentence: str) -> str:
        p, rng = self.persona, self.rng
        words = [self._style_word(w) for w in sentence.split(" ")]
        text = " ".join(words)
        stripped = text.rstrip(".!?")
        is_question = text.endswith("?")
        text = stripped + (p.question_punct if is_question else p.end_punct)
        if p.lowercase:
            text = text.lower()
        if p.slang and rng.random() < p.slang_rate:
            slang = rng.choice(p.slang)
            text = f"{slang} {text}" if rng.random() < 0.5 else f"{text} {slang}"
        if p.language and rng.random() < p.language_rate:
            word = rng.choice(LANGUAGES[p.language][1])
            text = f"{word} {text}" if rng.random() < 0.5 else f"{text} {word}"
        if rng.random() < p.laugh_rate:
            text = f"{text} {p.laugh}"
        if p.emoji and rng.random() < p.emoji_rate:
            text = f"{text} {rng.choice(p.emoji) * p.emoji_repeat}"
        return text

    def _topic_sentence(self) -> str:
        p, rng = self.persona, self.rng
        if rng.random() < self.topic_share:
            topic = rng.choices(p.topics, weights=p.topic_weights)[0]
        else:
            topic = rng.choice(("plans", "checkin", "food"))
        return self.filler.fill(rng.choice(TOPICS[topic]))

    def _pii_sentence(self) -> tuple[str, list[tuple[str, str]]]:
        rng, pii, p = self.rng, self.pii, self.persona
        template = self._style_sentence(rng.choice(PII_FRAGMENTS))
        planted: list[tuple[str, str]] = []
        values: dict[str, str] = {}
        first, last = pii.first_name(), pii.last_name()
        case = str.lower if p.lowercase else (lambda s: s)
        for key in ("name", "first", "email", "phone", "address", "date"):
            if "{" + key + "}" not in template:
                continue
            if key == "name":
                value, kind = case(f"{first} {last}" if rng.random() < 0.6 else first), "PERSON"
            elif key == "first":
                value, kind = case(first), "PERSON"
            elif key == "email":
                value, kind = pii.email(first, last), "EMAIL"
            elif key == "phone":
                value, kind = pii.phone(), "PHONE"
            elif key == "address":
                value, kind = case(pii.address() if rng.random() < 0.5 else pii.street_address()), "LOCATION"
            else:
                value, kind = pii.date(2024, 2026), "DATE"
            values[key] = value
            planted.append((kind, value))
        return template.format(**values), planted

    def _add_topic_sentence(self, sentences: list[str]) -> None:
        for _ in range(3):  # avoid saying the exact same thing twice in one message
            raw = self._topic_sentence()
            if not any(raw.rstrip(".!?").lower() in s.lower() for s in sentences):
                break
        sentences.append(self._style_sentence(raw))

    # -- records ----------------------------------------------------------------------------------
    def record(self, with_pii: bool, min_words: int = 15, max_words: int = 60) -> Record:
        p, rng = self.persona, self.rng
        sentences: list[str] = []
        for _ in range(rng.randint(2, 3)):
            self._add_topic_sentence(sentences)
        planted: list[tuple[str, str]] = []
        if with_pii:
            sentence, planted = self._pii_sentence()
            sentences.insert(rng.randint(0, len(sentences)), sentence)
        while sum(len(s.split()) for s in sentences) < min_words - 2 and len(sentences) < 7:
            self._add_topic_sentence(sentences)
        while len(sentences) > 1 and sum(len(s.split()) for s in sentences) > max_words:
            # Drop a trailing non-PII sentence.
            idx = next((i for i in range(len(sentences) - 1, -1, -1) if "{" not in sentences[i]
                        and not any(v in sentences[i] for _, v in planted)), None)
            if idx is None:
                break
            sentences.pop(idx)
        if p.greetings and rng.random() < p.greeting_rate:
            greeting = rng.choice(p.greetings)
            sentences.insert(0, greeting.lower() if p.lowercase and greeting.isascii() else greeting)
        if p.signoffs and rng.random() < p.signoff_rate:
            sentences.append(rng.choice(p.signoffs))
        joiner = "\n" if p.double_texter else " "
        text = joiner.join(s for s in sentences if s)
        return Record(text, locate_spans(text, planted))
