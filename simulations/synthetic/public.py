"""The public corpus: generic text of both domains, used to pretrain the default model.

* general-medicine notes (primary care, urgent care, ED, hospitalist, nursing) composed from
  interchangeable sections and phrasings, with common abbreviations; half of them also *mention*
  terms of the departments (problem lists, referrals, outside records) in generic sentence frames,
  but never use a department's note templates or conventions; de-identified (no names, MRNs,
  contact details);
* messages over all topics: mostly neutral style (standard spelling and punctuation, rare emoji),
  plus a minority written in a style drawn afresh for every message (population-level texting
  habits, never one user's consistent style).

It deliberately shares the *domains* of the client corpora but not their client-specific styles,
so that personalization (LoRA on a client's data) has something to learn.
"""

from __future__ import annotations

import random
import re

from simulations.synthetic.common import Filler, Slot, derive_seed, squeeze_spaces, word_count
from simulations.synthetic.hospital import COMMON_VOCAB, SPECIALTIES
from simulations.synthetic.phone import TOPIC_NAMES, Persona, PhoneGenerator

# A note = optional header + intro + 2-3 middle sections (in order) + assessment + plan (+ follow-up).
HEADERS: tuple[str, ...] = (
    "Progress note.", "Clinic note:", "H&P:", "ED note:", "SOAP note.", "Consult note:", "Discharge summary:",
    "Nursing note:", "Telephone encounter:", "Follow-up visit.", "Hospitalist note:", "Urgent care visit.",
    "Primary care visit.", "Admission note:", "Subjective:", "Office visit.", "Annual physical.", "Walk-in clinic:",
)
INTRO: tuple[str, ...] = (
    "{age}-year-old {sexl} presenting with {complaint} for {duration}.",
    "{age} y/o {sexl} c/o {complaint} x {duration}.",
    "Pt is a {age}yo {mf} with hx of {condition_abbr} here for {complaint}.",
    "The patient is a {age}-year-old {sexw} with a history of {condition} and {condition2} who reports {complaint}.",
    "{age}{mf} with PMH {condition_abbr}, {condition_abbr2}, presents w/ {complaint}.",
    "Patient reports {complaint} that started {onset}.",
    "{age}-year-old {sexw} seen for follow-up of {condition}.",
    "Patient called reporting {complaint} since {onset}.",
    "Here today for {visit_reason}.",
)
HPI: tuple[str, ...] = (
    "Symptoms are {quality} and {modifier}.",
    "Denies {denies}.",
    "Denies {denies}, {denies2}.",
    "Associated with {assoc}.",
    "No recent travel or sick contacts.",
    "Tried {otc} without relief.",
    "Pain {pain}/10, {quality}.",
    "Reports {status}.",
    "Adherent to meds, {lifestyle}.",
)
VITALS: tuple[str, ...] = (
    "Vitals: BP {bp}, HR {hr}, RR {rr}, T {tempc}, SpO2 {spo2}%.",
    "BP {bp} HR {hr} T {tempc} SpO2 {spo2}% RA.",
    "Vital signs: blood pressure {bp}, heart rate {hr}, temperature {tempc} C, oxygen saturation {spo2}%.",
    "Afebrile, HR {hr}, BP {bp}.",
    "VS stable, BP {bp}, HR {hr}.",
    "Weight {weight} kg, BMI {bmi}.",
)
EXAM: tuple[str, ...] = (
    "Exam: {exam}.",
    "On exam, {exam}.",
    "PE: {general}, {lungs}, {heart}.",
    "General: {general}. Lungs: {lungs}. Heart: {heart}. Abdomen: {abdomen}.",
    "{general}. {abdomen}.",
    "Exam notable for {exam}.",
)
LABS: tuple[str, ...] = (
    "Labs: WBC {wbc}, Hgb {hgb}, Plt {plt}, Na {na}, K {k}, Cr {cr}.",
    "BMP notable for {lab_finding}.",
    "CBC {result}.",
    "{workup} was {result}.",
    "UA {ua}.",
    "Glucose {glucose}, A1c {a1c}%.",
    "{workup} ordered.",
)
ASSESSMENT: tuple[str, ...] = (
    "Assessment: {diagnosis}.",
    "A/P: {diagnosis_abbr}.",
    "Impression: likely {diagnosis}.",
    "Dx: {diagnosis_abbr}.",
    "Assessment and plan: {diagnosis}, {course}.",
    "Most consistent with {diagnosis}.",
)
PLAN: tuple[str, ...] = (
    "Plan: {plan}.",
    "Will {plan_verb}.",
    "Start {med_dose}.",
    "Continue {medication}, {medication2}.",
    "{plan_cap}; f/u in {followup}.",
    "1. {plan_cap}. 2. {plan_cap2}.",
    "Rx {medication}. Return precautions given.",
    "Advised {advice}.",
    "Counseled on {counsel}.",
)
FOLLOWUP: tuple[str, ...] = (
    "Follow up in {followup}.",
    "RTC {followup}.",
    "F/u with PCP in {followup}.",
    "Return if symptoms worsen.",
    "Discharged home in stable condition.",
    "Patient agrees with plan.",
    "Questions answered.",
    "Will continue to monitor.",
)

GENERAL_MEDICAL_VOCAB: dict[str, Slot] = {
    "mf": ("M", "F"),
    "complaint": ("cough", "fever", "sore throat", "headache", "lower back pain", "fatigue", "abdominal pain", "shortness of breath", "dizziness", "chest discomfort", "joint pain", "rash", "nausea", "burning with urination", "ear pain", "anxiety", "trouble sleeping", "palpitations", "leg swelling", "knee pain", "low mood", "diarrhea", "wheezing", "numbness in the hands", "a skin lesion", "weight loss", "heartburn", "a fall"),
    "visit_reason": ("a medication refill", "blood pressure check", "diabetes follow-up", "a wellness exam", "lab review", "pre-op clearance", "a work note", "vaccines"),
    "onset": ("this morning", "two days ago", "after lifting a heavy box", "last week", "suddenly yesterday", "gradually over a month", "yesterday evening", "after a cold"),
    "condition": ("hypertension", "type 2 diabetes", "asthma", "hypothyroidism", "high cholesterol", "chronic back pain", "depression", "COPD", "atrial fibrillation", "obesity", "GERD", "osteoarthritis", "migraine", "anxiety", "chronic kidney disease", "heart failure", "sleep apnea"),
    "condition_abbr": ("HTN", "T2DM", "DM2", "HLD", "COPD", "CKD", "CHF", "AFib", "CAD", "GERD", "OA", "OSA", "asthma", "hypothyroidism", "depression", "obesity"),
    "denies": ("fever", "chills", "chest pain", "vomiting", "SOB", "recent travel", "blood in the stool", "weight loss", "headache", "dysuria", "LOC", "night sweats"),
    "quality": ("intermittent", "constant", "worse at night", "sharp", "dull and achy", "mild", "moderate", "severe", "improving"),
    "modifier": ("worse with activity", "better with rest", "not related to meals", "worse in the morning", "relieved by ibuprofen"),
    "assoc": ("nausea", "mild fatigue", "runny nose", "poor appetite", "muscle aches", "lightheadedness"),
    "otc": ("ibuprofen", "acetaminophen", "antacids", "cough syrup", "rest and ice", "a heating pad"),
    "status": ("feeling well", "occasional symptoms", "improved energy", "some side effects", "good adherence to medications", "no new complaints", "worsening symptoms"),
    "lifestyle": ("exercising three times a week", "mostly sedentary", "trying to cut back on sugar", "sleeping about six hours a night", "no tobacco use", "occasional alcohol", "quit smoking last year"),
    "weight": lambda r: f"{r.uniform(48, 135):.1f}",
    "bmi": lambda r: f"{r.uniform(18, 44):.1f}",
    "exam": ("clear lungs and regular heart rhythm", "mild tenderness in the lower back", "erythematous pharynx without exudate", "soft, nontender abdomen", "no focal neurologic deficits", "mild wheezing bilaterally", "trace bilateral LE edema", "swollen, tender R knee", "scattered crackles at the bases", "a normal exam", "TM erythema on the left"),
    "general": ("NAD", "well-appearing", "alert and oriented", "appears uncomfortable", "A&Ox3, NAD", "tired-appearing"),
    "lungs": ("CTAB", "clear to auscultation", "mild expiratory wheeze", "crackles at the bases", "diminished breath sounds on the right"),
    "heart": ("RRR, no murmurs", "regular rate and rhythm", "irregularly irregular", "tachycardic, no murmur", "S1 S2 normal"),
    "abdomen": ("soft, NT/ND", "soft, nontender", "mild epigastric tenderness", "RLQ tenderness", "normal bowel sounds"),
    "wbc": lambda r: f"{r.uniform(3.5, 16.0):.1f}",
    "hgb": lambda r: f"{r.uniform(8.5, 16.5):.1f}",
    "plt": lambda r: f"{r.randint(110, 420)}",
    "na": lambda r: f"{r.randint(128, 146)}",
    "k": lambda r: f"{r.uniform(3.1, 5.6):.1f}",
    "cr": lambda r: f"{r.uniform(0.6, 2.8):.1f}",
    "glucose": lambda r: f"{r.randint(72, 340)}",
    "a1c": lambda r: f"{r.uniform(5.2, 11.5):.1f}",
    "lab_finding": ("mild hyponatremia", "AKI", "hypokalemia", "normal renal function", "elevated glucose"),
    "ua": ("positive for nitrites and LE", "negative", "with trace protein", "with small blood"),
    "workup": ("CXR", "ECG", "CT head", "US abdomen", "a chest x-ray", "an electrocardiogram", "a urinalysis", "blood work", "a lipid panel", "TSH"),
    "result": ("unremarkable", "within normal limits", "notable for mild anemia", "showing a small infiltrate", "reassuring", "slightly elevated", "WNL"),
    "diagnosis": ("viral upper respiratory infection", "muscle strain", "tension headache", "urinary tract infection", "gastroenteritis", "hypertension, uncontrolled", "type 2 diabetes", "seasonal allergies", "generalized anxiety", "community-acquired pneumonia", "dehydration", "contact dermatitis", "acute bronchitis", "COPD exacerbation", "cellulitis", "GERD", "sinusitis", "knee osteoarthritis", "migraine", "depression", "atrial fibrillation", "otitis media", "ankle sprain"),
    "diagnosis_abbr": ("URI", "UTI", "CAP", "HTN", "T2DM, uncontrolled", "AGE", "LBP, mechanical", "GERD", "COPD exac", "AOM", "cellulitis", "HLD", "MDD", "GAD", "OA"),
    "course": ("improving", "stable", "worsening", "new diagnosis", "well controlled", "not at goal"),
    "plan": ("rest, fluids, and OTC pain relief", "a short course of antibiotics", "PT referral", "blood work and follow-up", "increase the dose of the current medication", "diet and exercise", "CXR and reassessment", "home BP monitoring", "referral to specialist", "supportive care"),
    "plan_cap": ("Fluids and rest", "Antibiotics x7 days", "PT referral", "Labs in 1 week", "Increase dose", "Lifestyle changes", "Recheck BP", "Refer to specialist", "Supportive care", "Stop NSAIDs"),
    "plan_verb": ("recheck labs next week", "start antibiotics", "refer to PT", "titrate the dose", "monitor closely", "obtain imaging", "reassess at next visit"),
    "medication": ("lisinopril", "metformin", "atorvastatin", "amlodipine", "ibuprofen", "acetaminophen", "amoxicillin", "omeprazole", "albuterol", "levothyroxine", "sertraline", "cephalexin", "prednisone", "HCTZ", "losartan", "azithromycin", "gabapentin", "naproxen", "cetirizine", "fluticasone nasal spray", "nitrofurantoin", "metoprolol"),
    "med_dose": ("lisinopril 10 mg daily", "metformin 500 mg BID", "atorvastatin 40 mg qHS", "amlodipine 5 mg daily", "ibuprofen 600 mg q6h PRN", "acetaminophen 1 g q8h PRN", "amoxicillin 875 mg BID x10d", "omeprazole 20 mg daily", "albuterol 2 puffs q4h PRN", "levothyroxine 50 mcg daily", "sertraline 50 mg daily", "cephalexin 500 mg QID x7d", "prednisone 40 mg x5d", "losartan 25 mg daily", "azithromycin 500 mg then 250 mg x4d", "nitrofurantoin 100 mg BID x5d", "cetirizine 10 mg daily"),
    "advice": ("rest and fluids", "to return tomorrow if worse", "to go to the ED if symptoms worsen", "acetaminophen as needed", "to continue the current antibiotic", "ice and elevation", "a low-sodium diet"),
    "counsel": ("diet and exercise", "sleep hygiene", "sun protection", "alcohol moderation", "stress management", "smoking cessation", "medication side effects", "fall prevention"),
    "nursing": ("Ambulated in the hallway with assistance", "Tolerating a regular diet", "IV site clean and dry", "Call light within reach, bed in low position", "Family at bedside", "Voiding without difficulty"),
}

_MIDDLE = (HPI, VITALS, EXAM, LABS)

# General notes also *mention* the terms of every department (problem lists, outside records,
# referrals), in generic sentence frames: the public model knows the words, not any department's
# note style, abbreviation habits or term frequencies.
SPECIALTY_TERMS: dict[str, tuple[str, ...]] = {
    spec.name: tuple(
        sorted({v for slot in spec.vocab.values() if not callable(slot) for v in slot if "{" not in v and len(v) > 2})
    )
    for spec in SPECIALTIES
}
SPECIALTY_FRAMES: tuple[str, ...] = (
    "History notable for {term} and {term2}.",
    "Prior workup showed {term}.",
    "Outside records mention {term}.",
    "Problem list: {term}, {term2}, {term3}.",
    "{dept_cap} was consulted regarding {term}.",
    "Referred to {dept} for {term}.",
    "Followed by {dept}; last note mentions {term} and {term2}.",
    "Current treatment per {dept}: {term}.",
    "Discussed {term} with the patient and family.",
    "Chart review: {term}; {term2}.",
)
_SENTENCE_START = re.compile(r"(^|[.!?] )([a-z])")


def _capitalize_sentences(text: str) -> str:
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _medical_record(filler: Filler, rng: random.Random, max_words: int = 60) -> str:
    parts: list[str] = []
    if rng.random() < 0.75:
        parts.append(rng.choice(HEADERS))
    parts.append(rng.choice(INTRO))
    chosen = sorted(rng.sample(range(len(_MIDDLE)), rng.randint(1, 3)))
    parts.extend(rng.choice(_MIDDLE[i]) for i in chosen)
    if rng.random() < 0.3:
        parts.append(rng.choice(HPI if rng.random() < 0.5 else EXAM))
    if rng.random() < 0.5:
        dept = rng.choice(SPECIALTIES).name
        terms = rng.sample(SPECIALTY_TERMS[dept], 3)
        frame = rng.choice(SPECIALTY_FRAMES).format(
            term=terms[0], term2=terms[1], term3=terms[2], dept=dept, dept_cap=dept.capitalize()
        )
        parts.insert(rng.randint(1, len(parts)), frame.replace("{", "(").replace("}", ")"))
    parts.append(rng.choice(ASSESSMENT))
    parts.append(rng.choice(PLAN))
    if rng.random() < 0.6:
        parts.append(rng.choice(FOLLOWUP))
    if rng.random() < 0.1:
        parts.append("{nursing}.")
    sentences = [_capitalize_sentences(squeeze_spaces(filler.fill(part))) for part in parts]
    while len(sentences) > 3 and sum(word_count(x) for x in sentences) > max_words:
        sentences.pop(rng.randint(1, len(sentences) - 3))  # drop a middle section
    return " ".join(sentences)


def public_records(num_records: int, seed: int, styled_message_share: float = 0.3) -> list[str]:
    """Interleaved general-medicine notes and messages (about half each)."""
    rng = random.Random(derive_seed(seed, "public"))
    filler = Filler(rng, GENERAL_MEDICAL_VOCAB, COMMON_VOCAB)
    neutral = Persona.neutral()
    messages = PhoneGenerator(neutral, random.Random(derive_seed(seed, "public", "messages")), topic_share=0.7)
    style_rng = random.Random(derive_seed(seed, "public", "styles"))
    out: list[str] = []
    for _ in range(num_records):
        if rng.random() < 0.5:
            out.append(_medical_record(filler, rng))
        else:
            # A fresh style per message: population-level habits, never one user's style.
            styled = style_rng.random() < styled_message_share
            messages.persona = Persona.random(style_rng) if styled else neutral
            if styled:
                messages.persona = _with_all_topics(messages.persona)
            out.append(messages.record(with_pii=False).text)
    return out


def _with_all_topics(persona: Persona) -> Persona:
    from dataclasses import replace

    return replace(persona, topics=TOPIC_NAMES, topic_weights=tuple(1.0 for _ in TOPIC_NAMES))
