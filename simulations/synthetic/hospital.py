"""Hospital profile: each client is one department with its own vocabulary and note style.

A specialty is a set of note templates (``{slot}`` placeholders) plus vocabulary lists. Slots not
found in the specialty's vocabulary fall back to :data:`COMMON_VOCAB` (vitals, ages, durations).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from simulations.synthetic.common import Filler, Record, Slot, locate_spans, squeeze_spaces
from simulations.synthetic.pii import DATE_STYLES, MRN_STYLES, PHONE_STYLES, PIIFactory


def _num(lo: int, hi: int, fmt: str = "{}") -> Callable[[random.Random], str]:
    return lambda r: fmt.format(r.randint(lo, hi))


def _dec(lo: float, hi: float, nd: int = 1) -> Callable[[random.Random], str]:
    return lambda r: f"{r.uniform(lo, hi):.{nd}f}"


def _bp(r: random.Random) -> str:
    return f"{r.randint(92, 182)}/{r.randint(52, 104)}"


COMMON_VOCAB: dict[str, Slot] = {
    "age": _num(19, 93),
    "sx": ("M", "F", "M", "F", "yo M", "yo F"),
    "sexw": ("man", "woman"),
    "sexl": ("male", "female"),
    "bp": _bp,
    "hr": _num(52, 124),
    "rr": _num(12, 26),
    "spo2": _num(89, 100),
    "tempc": _dec(36.2, 39.6),
    "hd": _num(1, 9),
    "n": _num(2, 6),
    "duration": ("2 days", "3 days", "1 week", "2 wks", "several hours", "4 days", "1 month", "10 days", "since yesterday", "6 weeks"),
    "followup": ("1 week", "2 weeks", "4 weeks", "6 weeks", "3 months", "6 months", "1 month", "4-6 weeks"),
    "time_ago": ("2 weeks ago", "3 months ago", "1 year ago", "6 weeks ago", "last month"),
    "pain": _num(0, 9),
}


@dataclass(frozen=True)
class Specialty:
    name: str
    templates: tuple[str, ...]
    vocab: dict[str, Slot]
    # Extra identifier fragments typical of this department (on top of the shared ones).
    pii_fragments: tuple[str, ...] = field(default=())


CARDIOLOGY = Specialty(
    "cardiology",
    templates=(
        "{age}{sx} w/ PMH {pmh}, {pmh2} p/w {cc} x {duration}. ECG: {ecg}. Trop {trop}. TTE: EF {ef}%, {echo}. A/P: {dx}. Start {med}, cont {med2}. {plan}.",
        "Cath lab note: {age}{sx} with {dx}. Access via {access}. {lesion}. {intervention}. No complications. DAPT with {antiplatelet} + ASA x 12 mo. {plan}.",
        "Echo report: LVEF {ef}%. {echo}. {valve}. RVSP {rvsp} mmHg. Impression: {echo_imp}.",
        "CCU progress note HD#{hd}: {age}{sx} admitted for {dx}. Overnight {overnight}. Tele: {rhythm}. BP {bp}, HR {hr}. Plan: {plan}; {plan2}.",
        "Discharge summary (cardiology): admitted with {cc}, found to have {dx}. Underwent {procedure}. Discharged on {med}, {med2}, {med3}. F/u cards clinic in {followup}. Cardiac rehab referral placed.",
        "Cards clinic f/u: {age}{sx} s/p {procedure} {time_ago}. Reports {status}. NYHA class {nyha}. BP {bp}, HR {hr}. {plan}. RTC {followup}.",
        "Stress test: {stress_proto}, achieved {mets} METs, {pct_mphr}% MPHR. {stress_result}. Impression: {stress_imp}.",
        "Cardiology consult: asked to see {age}{sx} for {cc}. Hx {pmh}. ECG {ecg}. hs-trop {trop}. BNP {bnp}. Rec: {plan}, {plan2}. Will follow.",
    ),
    vocab={
        "pmh": ("HTN", "HLD", "DM2", "CAD", "prior MI", "CKD3", "AFib on apixaban", "HFrEF", "tobacco use", "OSA"),
        "cc": ("substernal CP", "exertional chest pressure", "palpitations", "DOE", "syncope", "orthopnea and PND", "LE edema", "presyncope"),
        "ecg": ("NSR, no acute ST changes", "ST elevations II, III, aVF", "AFib w/ RVR", "new LBBB", "TWI V1-V4", "sinus tach", "1st deg AV block", "ST depressions V4-V6"),
        "trop": ("neg x2", "0.04 -> 0.31", "peaked at 2.1", "flat", "mildly elevated, downtrending"),
        "ef": _num(20, 65),
        "echo": ("no WMA", "anterior wall hypokinesis", "global hypokinesis", "mild LVH", "grade 2 diastolic dysfunction", "dilated LV"),
        "valve": ("Mild MR", "Moderate AS, AVA 1.1 cm2", "Trace TR", "Severe MR with flail P2", "Bicuspid AV", "No significant valvular disease"),
        "rvsp": _num(22, 58),
        "echo_imp": ("normal biventricular function", "ischemic cardiomyopathy", "HFpEF physiology", "moderate aortic stenosis", "LV thrombus not seen"),
        "dx": ("NSTEMI", "inferior STEMI", "HFrEF exacerbation", "new-onset AFib", "unstable angina", "symptomatic bradycardia", "takotsubo CM", "stable angina"),
        "med": ("metoprolol succinate 25 mg daily", "atorvastatin 80 mg", "lisinopril 10 mg", "sacubitril/valsartan 24/26 mg BID", "furosemide 40 mg IV BID", "apixaban 5 mg BID", "spironolactone 25 mg", "empagliflozin 10 mg", "amiodarone load", "heparin gtt"),
        "antiplatelet": ("ticagrelor", "clopidogrel", "prasugrel"),
        "access": ("R radial", "R femoral", "L radial"),
        "lesion": ("90% prox LAD", "99% mid RCA, TIMI 1 flow", "80% LCx", "diffuse 3VD", "70% OM1", "no obstructive CAD"),
        "intervention": ("PCI w/ DES x1", "PCI w/ DES x2", "POBA only", "referred for CABG", "medical management"),
        "overnight": ("uneventful", "brief run of NSVT", "diuresed 2L", "hypotensive to 88/50, responded to fluids", "c/o CP, ECG unchanged"),
        "rhythm": ("NSR 60s-70s", "AFib rate 80s-90s", "sinus brady 50s", "occasional PVCs", "paced rhythm"),
        "plan": ("Uptitrate GDMT", "Diurese to dry weight", "Cont heparin gtt x48h", "Rate control, CHA2DS2-VASc 4, anticoagulate", "Lipid panel, A1c", "Repeat TTE in 3 mo", "Holter monitor x 48h", "EP referral for ablation"),
        "procedure": ("PCI to LAD", "CABG x3", "TAVR", "PPM placement", "DCCV", "AFib ablation", "ICD implant"),
        "status": ("no CP, improved DOE", "occasional palpitations", "stable 2-pillow orthopnea", "walking 2 miles daily without sx", "mild fatigue on beta blocker"),
        "nyha": ("I", "II", "II-III", "III"),
        "stress_proto": ("Bruce protocol", "Lexiscan nuclear", "dobutamine stress echo", "modified Bruce"),
        "mets": _num(4, 13),
        "pct_mphr": _num(70, 98),
        "stress_result": ("No ischemic ECG changes", "1.5 mm horizontal ST depression in lateral leads", "Reversible inferior perfusion defect", "Fixed anterior defect"),
        "stress_imp": ("low risk study", "intermediate risk, recommend cath", "high risk, cath recommended", "nondiagnostic"),
        "bnp": _num(45, 2400),
    },
    pii_fragments=("Cath lab callback for {name}: {phone}.", "Device clinic ID for {name}: {mrn}."),
)

ONCOLOGY = Specialty(
    "oncology",
    templates=(
        "Oncology clinic: {age}-year-old {sexw} with {stage} {cancer}, on {regimen} cycle {cycle} day {day}. ECOG {ecog}. Reports {tox}. Labs: ANC {anc}, Hgb {hgb}, Plt {plt}. Plan: {onc_plan}.",
        "Tumor board summary: {cancer}, {stage}, {biomarker}. Imaging shows {imaging}. Recommendation: {onc_rec}.",
        "Infusion note: C{cycle}D{day} {regimen} administered without reaction. Premedicated with {premed}. Next cycle in {interval} pending counts.",
        "Restaging {modality} after {n} cycles of {regimen}: {response}. {onc_plan}.",
        "Heme/onc discharge summary: admitted with {onc_admit} while on {regimen} for {cancer}. Treated with {onc_tx}. Goals of care discussed; patient wishes {goc}. F/u in {followup}.",
        "Survivorship visit: {age}-year-old {sexw}, {n} years out from {cancer} treated with {onc_hist}. NED on surveillance imaging. {surv_plan}.",
        "Oncology nursing note: {tox}. Antiemetics reviewed ({premed}). Port site {port}. Pt tolerating {regimen}; weight stable. Reinforced neutropenic precautions.",
        "New patient consult: {age}-year-old {sexw} referred for {cancer}. Biopsy: {path}. Staging {modality} pending. Discussed {onc_rec}. Genetic counseling offered.",
    ),
    vocab={
        "cancer": ("NSCLC", "HER2+ breast cancer", "triple-negative breast cancer", "metastatic colorectal adenocarcinoma", "DLBCL", "pancreatic adenocarcinoma", "AML", "multiple myeloma", "mCRPC", "ovarian carcinoma"),
        "stage": ("stage IIIA", "stage IV", "stage IIB", "limited-stage", "oligometastatic", "locally advanced"),
        "regimen": ("FOLFOX", "FOLFIRINOX", "R-CHOP", "carboplatin/pemetrexed/pembrolizumab", "AC-T", "TCHP", "7+3 induction", "VRd", "gem/nab-paclitaxel", "nivolumab"),
        "cycle": _num(1, 8),
        "day": ("1", "1", "8", "15"),
        "ecog": ("0", "1", "1", "2", "3"),
        "tox": ("grade 1 peripheral neuropathy", "grade 2 nausea", "mucositis", "fatigue", "diarrhea 3-4x/day", "hand-foot syndrome", "no significant toxicity", "alopecia", "taste changes"),
        "anc": _dec(0.3, 6.5),
        "hgb": _dec(7.2, 13.8),
        "plt": _num(42, 380),
        "onc_plan": ("proceed with C{cycle} as scheduled", "hold chemo x1 wk for neutropenia", "dose reduce oxaliplatin 20%", "add G-CSF support", "transition to maintenance", "switch to second-line therapy", "refer to palliative care for symptom mgmt"),
        "biomarker": ("EGFR exon 19 del", "PD-L1 TPS 60%", "ER+/PR+/HER2-", "KRAS G12C", "MSI-high", "BRCA2 mutated", "FLT3-ITD positive"),
        "imaging": ("3.2 cm RUL mass with hilar adenopathy", "multiple hepatic lesions", "no distant mets", "new osseous lesions", "peritoneal carcinomatosis"),
        "onc_rec": ("neoadjuvant chemo followed by surgery", "concurrent chemoradiation", "systemic therapy with osimertinib", "SBRT to the primary", "clinical trial enrollment", "upfront resection"),
        "premed": ("ondansetron and dexamethasone", "diphenhydramine and famotidine", "olanzapine 5 mg", "aprepitant"),
        "interval": ("2 weeks", "3 weeks", "4 weeks", "1 week"),
        "modality": ("CT C/A/P", "PET/CT", "MRI brain", "bone scan"),
        "response": ("partial response, target lesions down 40%", "stable disease per RECIST", "progression in liver", "complete metabolic response", "mixed response"),
        "onc_admit": ("neutropenic fever", "tumor lysis syndrome", "malignant pleural effusion", "hypercalcemia of malignancy", "SVC syndrome", "uncontrolled pain"),
        "onc_tx": ("cefepime and G-CSF", "rasburicase and IVF", "thoracentesis", "zoledronic acid", "dexamethasone and RT", "PCA titration"),
        "goc": ("full code and continued treatment", "DNR/DNI", "home hospice", "time-limited trial of chemo"),
        "onc_hist": ("lumpectomy and adjuvant RT", "R-CHOP x6", "Whipple + adjuvant chemo", "prostatectomy"),
        "surv_plan": ("Annual mammogram", "CEA q3 months", "CT chest yearly x5", "Cardio-oncology f/u for anthracycline exposure", "Bone density scan"),
        "port": ("C/D/I", "without erythema", "flushed, good blood return"),
        "path": ("invasive ductal carcinoma, grade 3", "adenocarcinoma, TTF-1 positive", "diffuse large B-cell lymphoma", "squamous cell carcinoma"),
    },
    pii_fragments=("Infusion chair booked for {name} on {date}.", "Oncology nurse navigator line for {name}: {phone}."),
)

PEDIATRICS = Specialty(
    "pediatrics",
    templates=(
        "Well-child visit, {pedage}. Weight {wt} kg ({pct} %ile), length {ht} cm ({pct2} %ile). {milestone}. Vaccines today: {vaccine}, {vaccine2}. Anticipatory guidance: {guidance}.",
        "{pedage} {sexkid} brought in by {caregiver} for {pedcc} x {duration}. {pedhx}. Exam: {pedexam}. Assessment: {peddx}. Plan: {pedplan}. Return precautions reviewed with {caregiver}.",
        "Peds ED: {pedage} with {pedcc}. T {tempc}, HR {hr_kid}, RR {rr_kid}, SpO2 {spo2}%. {pedexam}. Dx {peddx}. Given {pedmed} {mgkg} mg/kg. Discharged home with {caregiver}.",
        "NICU progress note: {ga} wk GA infant, DOL {dol}. On {resp_support}. Feeds {feeds}. Bili {bili}. Plan: {nicu_plan}.",
        "Phone triage: {caregiver} called re {pedage} with {pedcc}. Drinking {intake}, {wet} wet diapers today. Advised {pedadvice}.",
        "Peds hospitalist note: {pedage} admitted for {peddx}. {caregiver_cap} at bedside, updated on plan. {pedexam}. Tolerating PO. Plan: {pedplan}. Anticipate d/c in 24-48h.",
        "School form / sports physical: {pedage_school} {sexkid}, healthy. BMI {pct} %ile. Vision 20/20. Cleared for {sport} without restriction. {guidance}.",
    ),
    vocab={
        "pedage": ("2 mo", "4 mo", "6 mo", "9 mo", "12 mo", "15 mo", "18 mo", "2 yo", "3 yo", "5 yo", "7 yo", "10 yo"),
        "pedage_school": ("8 yo", "11 yo", "13 yo", "15 yo", "16 yo"),
        "sexkid": ("boy", "girl", "male", "female"),
        "caregiver": ("mom", "dad", "mother", "father", "grandma", "both parents", "foster mom"),
        "caregiver_cap": ("Mom", "Dad", "Parents", "Grandmother"),
        "wt": _dec(4.1, 32.0),
        "ht": _dec(55.0, 138.0),
        "pct": _num(5, 95),
        "pct2": _num(5, 95),
        "milestone": ("Social smile, coos", "Sits without support, babbles", "Pulls to stand, says mama/dada", "Walks independently, 3-5 words", "Runs, 2-word phrases", "Meeting all milestones per parent"),
        "vaccine": ("DTaP", "IPV", "Hib", "PCV20", "HepB", "MMR", "varicella", "HepA", "rotavirus", "influenza"),
        "guidance": ("safe sleep, back to sleep", "car seat rear-facing", "introduce solids", "dental home, fluoride varnish", "limit screen time", "water safety", "helmet use"),
        "pedcc": ("fever to 102.4", "cough and runny nose", "ear pulling", "vomiting and diarrhea", "rash", "wheezing", "decreased PO intake", "barky cough"),
        "pedhx": ("Sick contacts at daycare", "UTD on vaccines", "No PMH, term birth", "Hx of RAD", "Sibling with similar sx"),
        "pedexam": ("TMs bulging and erythematous on the R", "well-appearing, playful, MMM", "mild subcostal retractions, scattered wheeze", "cap refill <2 sec", "lacy reticular rash on trunk", "stridor at rest absent"),
        "peddx": ("AOM", "viral URI", "bronchiolitis", "croup", "acute gastroenteritis", "fifth disease", "asthma exacerbation", "febrile illness, likely viral"),
        "pedplan": ("amoxicillin 90 mg/kg/day divided BID x10d", "supportive care, nasal suction", "dexamethasone 0.6 mg/kg x1", "ORT, small frequent sips", "albuterol q4h + oral steroids", "tylenol/motrin PRN fever"),
        "hr_kid": _num(88, 168),
        "rr_kid": _num(20, 52),
        "pedmed": ("ibuprofen", "acetaminophen", "ondansetron", "dexamethasone", "amoxicillin"),
        "mgkg": ("10", "15", "0.15", "0.6", "45"),
        "ga": _num(26, 36),
        "dol": _num(1, 40),
        "resp_support": ("RA", "NC 1L", "CPAP +5", "HFNC 4L", "SIMV"),
        "feeds": ("EBM 24 kcal, 30 mL q3h", "full enteral feeds, PO/NG", "advancing by 20 mL/kg/day", "TPN + trophic feeds"),
        "bili": ("12.4, below light level", "15.1, on phototherapy", "downtrending", "rebound checked, stable"),
        "nicu_plan": ("wean CPAP as tolerated", "continue caffeine", "advance feeds, monitor for FI", "hearing screen before d/c", "repeat HUS"),
        "intake": ("well", "less than usual", "only small sips", "normally"),
        "wet": _num(1, 6),
        "pedadvice": ("home care, call back if fever >3 days", "to come in today", "ED now for dehydration eval", "honey for cough if >1 yo"),
        "sport": ("soccer", "basketball", "swimming", "track", "volleyball"),
    },
    pii_fragments=("Mom ({name}) reachable at {phone}.", "Guardian: {name}, {address}.", "Daycare note for {name} dated {date}."),
)

ORTHOPEDICS = Specialty(
    "orthopedics",
    templates=(
        "POD#{pod} s/p {ortho_proc} ({side}). Pain {pain}/10, controlled on {ortho_med}. Dressing {dressing}. NVI distally. {wb}. PT to {pt_goal}. DVT ppx: {dvt}.",
        "Ortho consult: {age}{sx} s/p {mechanism}, c/o {side} {joint} pain. XR: {xr}. Exam: {ortho_exam}. Plan: {ortho_plan}.",
        "Clinic f/u {weeks} wks post {ortho_proc}. Incision {incision}. ROM {rom}. XR shows {healing}. Advance to {wb}. Continue PT {freq}.",
        "Op note: Procedure: {ortho_proc}, {side}. Anesthesia: {anesthesia}. EBL {ebl} mL. Implants: {implant}. Findings: {op_findings}. Complications: none. Dispo: {dispo}.",
        "Sports med: {age}{sx} {sport} player with {side} {joint} injury. {special_test} positive. MRI: {mri}. Plan: {ortho_plan}.",
        "Ortho trauma note: {age}{sx} {mechanism}. {xr}. Closed reduction performed under {anesthesia}, post-reduction films acceptable. Splinted. {wb}. OR {or_timing}.",
        "PT progress note: {ortho_proc} {weeks} wks. Knee flexion {flex} deg, ext {ext} deg. Gait {gait_ortho}. HEP updated: {hep}.",
    ),
    vocab={
        "pod": _num(0, 4),
        "side": ("R", "L", "right", "left", "bilateral"),
        "ortho_proc": ("TKA", "THA", "ORIF distal radius", "ACL reconstruction (BTB autograft)", "IMN tibia", "rotator cuff repair", "L4-5 laminectomy", "CRPP supracondylar fx", "ORIF bimalleolar ankle fx"),
        "ortho_med": ("oxycodone 5 mg PRN + scheduled APAP", "tramadol PRN", "celecoxib + APAP", "ketorolac x48h"),
        "dressing": ("C/D/I", "with scant serosanguinous drainage", "changed, incision well approximated", "Aquacel in place"),
        "wb": ("WBAT", "NWB", "TTWB", "PWB 50%", "FWB", "NWB in splint"),
        "pt_goal": ("ambulate with walker", "stairs before d/c", "ROM 0-90", "transfer training"),
        "dvt": ("enoxaparin 40 mg daily", "ASA 81 BID x 4 wks", "SCDs + early mobilization", "rivaroxaban 10 mg"),
        "mechanism": ("mechanical fall from standing", "MVC", "FOOSH", "fall from ladder", "twisting injury playing soccer", "bike accident"),
        "joint": ("knee", "hip", "shoulder", "wrist", "ankle", "elbow"),
        "xr": ("displaced distal radius fx with dorsal angulation", "nondisplaced fibular fx", "femoral neck fx, Garden IV", "no acute fx", "severe tricompartmental OA", "bimalleolar ankle fx"),
        "ortho_exam": ("TTP over ASB", "effusion, limited ROM", "+ deformity, skin intact", "NVI, compartments soft", "painful arc, weak ER"),
        "ortho_plan": ("ORIF tomorrow", "CAM boot, f/u 2 wks", "sling, PT, MRI if no improvement", "steroid injection", "THA, consent obtained", "nonop mgmt, NSAIDs"),
        "weeks": _num(2, 12),
        "incision": ("healed", "well healed, staples removed", "C/D/I, steri-strips applied", "mild erythema, no drainage"),
        "rom": ("0-110", "0-95", "full", "FF 150, ER 40", "limited by pain"),
        "healing": ("interval callus formation", "hardware intact, no loosening", "healing fx, maintained alignment", "delayed union"),
        "freq": ("2x/wk", "3x/wk", "with HEP", "6 more weeks"),
        "anesthesia": ("GA", "spinal", "regional block + MAC", "hematoma block", "conscious sedation"),
        "ebl": _num(25, 600),
        "implant": ("Stryker Triathlon CR", "volar locking plate", "cephalomedullary nail", "suture anchors x3", "cemented femoral stem"),
        "op_findings": ("complete ACL tear, intact menisci", "comminuted fx", "full-thickness supraspinatus tear", "grade IV chondral wear"),
        "dispo": ("PACU then floor", "home same day", "SNF when stable"),
        "sport": ("soccer", "basketball", "football", "lacrosse", "tennis", "skiing"),
        "special_test": ("Lachman", "McMurray", "anterior drawer", "Hawkins", "Neer", "Spurling"),
        "mri": ("complete ACL tear", "medial meniscus bucket-handle tear", "partial-thickness RC tear", "labral tear", "bone bruise, no ligament injury"),
        "or_timing": ("planned for tomorrow", "when swelling improves", "not indicated"),
        "flex": _num(70, 130),
        "ext": _num(-10, 0),
        "gait_ortho": ("with SPC", "independent, mild antalgic", "with RW", "normalized"),
        "hep": ("quad sets, SLR, heel slides", "pendulums, AAROM", "calf raises, balance work", "bridges, clamshells"),
    },
    pii_fragments=("Surgery scheduled {date} for {name}.", "Workers comp claim for {name}, employer line {phone}."),
)

NEUROLOGY = Specialty(
    "neurology",
    templates=(
        "Stroke alert: {age}{sx} LKW {lkw}. NIHSS {nihss}: {deficit}. CT head {ct}. CTA {cta}. {thrombolysis}. Admit to stroke unit, {neuro_plan}.",
        "Neuro consult: {age}{sx} with {neuro_cc}. Exam: {mental}. CN II-XII {cn}. Strength {strength}. Reflexes {reflex}. Gait {gait}. Impression: {neuro_dx}. Recs: {neuro_recs}.",
        "EEG report ({eeg_kind}): {eeg}. No electrographic seizures captured. Impression: {eeg_imp}. Clinical correlation advised.",
        "Epilepsy clinic: {age}{sx}, {sz_type} seizures, last sz {last_sz}. On {aed}. {sz_freq}. Plan: {neuro_plan}. Driving restrictions reviewed.",
        "Headache clinic: {age}{sx} with {ha_desc}. MIDAS score {midas}. Trial {ha_med}. Keep headache diary. RTC {followup}.",
        "MS follow-up: {age}{sx} with RRMS on {dmt}. EDSS {edss}. MRI brain: {ms_mri}. Plan: {neuro_plan}.",
        "Neuromuscular clinic: {age}{sx} with {nm_sx}. EMG/NCS: {emg}. Dx: {nm_dx}. Plan: {neuro_recs}.",
    ),
    vocab={
        "lkw": ("0800", "45 min ago", "2.5h ago", "unknown, woke up with sx", "1930"),
        "nihss": _num(0, 22),
        "deficit": ("L facial droop, LUE drift, dysarthria", "R hemiparesis, expressive aphasia", "R gaze deviation, L neglect", "isolated ataxia", "L hemianopia"),
        "ct": ("neg for ICH", "hyperdense L MCA sign", "old lacunar infarcts", "no acute findings, ASPECTS 9"),
        "cta": ("L M1 occlusion", "no LVO", "R ICA 70% stenosis", "basilar tip occlusion"),
        "thrombolysis": ("TNK given at 0912", "Not a TNK candidate (on DOAC)", "Taken for thrombectomy, TICI 2b", "TNK given, then EVT"),
        "neuro_plan": ("BP <180/105 x24h, MRI brain, lipids, A1c", "TTE with bubble, telemetry", "start levetiracetam 500 BID", "increase lamotrigine to 150 BID", "switch DMT to ocrelizumab", "repeat MRI in 6 mo"),
        "neuro_cc": ("AMS", "new-onset seizure", "numbness in both feet", "worst headache of life", "transient vision loss", "double vision"),
        "mental": ("A&Ox3, fluent speech", "inattentive, A&Ox1", "somnolent but arousable", "follows commands, mild anomia"),
        "cn": ("intact", "notable for R CN VI palsy", "intact except L facial weakness (UMN pattern)"),
        "strength": ("5/5 throughout", "4/5 LUE/LLE", "3/5 RLE", "distal weakness 4-/5"),
        "reflex": ("2+ symmetric", "3+ on R with upgoing toe", "absent at ankles", "brisk throughout"),
        "gait": ("normal", "wide-based, unsteady", "not tested", "steppage gait"),
        "neuro_dx": ("L MCA ischemic stroke", "provoked seizure", "length-dependent sensory polyneuropathy", "SAH r/o, LP negative", "migraine w/ aura", "Bell's palsy"),
        "neuro_recs": ("MRI brain w/wo", "LP: cell count, protein, glucose", "B12, TSH, A1c, SPEP", "neuro checks q4h", "seizure precautions", "IVIG 2 g/kg"),
        "eeg": ("Posterior dominant rhythm 9 Hz, no epileptiform discharges", "L temporal sharp waves", "generalized 3 Hz spike-and-wave", "diffuse slowing", "R frontal periodic discharges"),
        "eeg_kind": ("routine 30 min", "24h ambulatory", "cEEG day 2", "sleep-deprived"),
        "eeg_imp": ("normal awake and drowsy EEG", "focal epileptogenic potential, L temporal", "consistent with generalized epilepsy", "mild diffuse encephalopathy"),
        "sz_type": ("focal impaired awareness", "GTC", "absence", "focal to bilateral tonic-clonic"),
        "last_sz": ("3 weeks ago", "6 months ago", "over 1 year ago", "yesterday"),
        "aed": ("levetiracetam 1000 BID", "lamotrigine 100 BID", "lacosamide 200 BID", "valproate ER 1000 qHS"),
        "sz_freq": ("Sz free since last visit", "2 breakthrough sz with missed doses", "Clusters monthly"),
        "ha_desc": ("episodic migraine 6-8 days/mo", "chronic daily headache, MOH suspected", "cluster HA, R retro-orbital", "new daily persistent HA"),
        "midas": _num(6, 48),
        "ha_med": ("topiramate 25 mg qHS titrate", "propranolol 40 BID", "erenumab monthly", "rizatriptan PRN", "nerve block"),
        "dmt": ("ocrelizumab", "dimethyl fumarate", "natalizumab", "fingolimod"),
        "edss": ("1.0", "2.0", "3.5", "4.0", "6.0"),
        "ms_mri": ("no new T2 lesions", "2 new periventricular lesions", "one enhancing lesion", "stable"),
        "nm_sx": ("progressive distal weakness", "fatigable ptosis", "hand numbness at night", "foot drop"),
        "emg": ("length-dependent axonal polyneuropathy", "decrement on RNS", "median neuropathy at wrist, moderate", "L5 radiculopathy"),
        "nm_dx": ("CIDP", "myasthenia gravis", "carpal tunnel syndrome", "ALS (El Escorial probable)"),
    },
    pii_fragments=("EEG lab contact for {name}: {phone}.", "Stroke code activated {date} for {name}."),
)

PSYCHIATRY = Specialty(
    "psychiatry",
    templates=(
        "Psychiatric evaluation: {age}{sx} presenting with {psych_cc}. Reports {psych_sx} for {duration}. Denies SI/HI/AVH. MSE: {mse}. Dx: {psych_dx}. Plan: {psych_plan}.",
        "Therapy session note: Pt discussed {therapy_topic}. Practiced {therapy_skill}. Mood \"{mood_quote}\", affect {affect}. PHQ-9 {phq}, GAD-7 {gad}. Homework: {homework}.",
        "Inpatient psych progress note, day {hd} on unit: {inpt_status}. Slept {sleep} hrs. Adherent with {psych_med}. {safety}. Continue current plan.",
        "Med management: {psych_dx}, stable on {psych_med}. Side effects: {se}. Sleep {sleep_q}, appetite {appetite}. {psych_plan}. RTC {followup}.",
        "Crisis assessment: {crisis}. Risk factors: {risk}. Protective factors: {protective}. Disposition: {psych_dispo}. Safety plan completed.",
        "Group therapy note: Pt attended {group} group, {participation}. Shared about {therapy_topic}. Affect {affect}.",
        "C-L psychiatry consult: asked to evaluate {age}{sx} on medicine service for {cl_reason}. {mse}. Capacity: {capacity}. Recs: {psych_plan}.",
    ),
    vocab={
        "psych_cc": ("worsening depression", "panic attacks", "racing thoughts and decreased need for sleep", "auditory hallucinations", "anxiety at work", "passive death wishes"),
        "psych_sx": ("anhedonia, low energy, poor concentration", "excessive worry and muscle tension", "intrusive memories and nightmares", "irritability, pressured speech", "social withdrawal"),
        "mse": ("Well-groomed, cooperative, euthymic, linear TP, no SI", "Disheveled, psychomotor slowing, constricted affect, TP linear", "Pressured speech, expansive affect, tangential TP", "Anxious, good eye contact, insight fair, judgment fair", "Guarded, internally preoccupied, TP disorganized"),
        "psych_dx": ("MDD, recurrent, moderate", "GAD", "bipolar I, current episode manic", "PTSD", "schizophrenia", "panic disorder", "adjustment d/o w/ depressed mood", "AUD, moderate"),
        "psych_plan": ("start sertraline 50 mg, titrate to 100", "increase escitalopram to 20 mg", "continue lithium, check level in 5 days", "refer to CBT", "start prazosin for nightmares", "hydroxyzine PRN anxiety", "safety plan reviewed"),
        "therapy_topic": ("conflict with partner", "grief after mother's death", "return to work", "avoidance of crowded places", "perfectionism", "sobriety milestones"),
        "therapy_skill": ("cognitive restructuring", "box breathing", "behavioral activation schedule", "DBT distress tolerance (TIPP)", "exposure hierarchy step 3"),
        "mood_quote": ("a little better", "tired", "pretty anxious", "okay I guess", "hopeful", "not great"),
        "affect": ("congruent, mildly constricted", "bright", "tearful at times", "euthymic", "anxious"),
        "phq": _num(2, 24),
        "gad": _num(1, 20),
        "homework": ("thought record daily", "schedule 3 pleasant activities", "practice exposure twice", "sleep diary"),
        "inpt_status": ("Calmer, attending groups", "Remains paranoid, refused AM meds", "Less pressured, sleeping better", "Visible on unit, interacting with peers"),
        "sleep": _num(3, 9),
        "psych_med": ("sertraline 100 mg", "lithium 600 mg BID", "quetiapine 200 mg qHS", "aripiprazole 10 mg", "bupropion XL 300 mg", "escitalopram 10 mg", "olanzapine 10 mg", "lamotrigine 200 mg"),
        "safety": ("Denies SI, contracts for safety", "On q15 checks", "No PRNs needed for agitation", "Passive SI without plan, 1:1 discontinued"),
        "se": ("none reported", "mild nausea", "weight gain 3 kg", "sexual side effects", "sedation in AM", "tremor"),
        "sleep_q": ("improved", "fragmented", "7-8 hrs", "poor"),
        "appetite": ("normal", "decreased", "increased"),
        "crisis": ("Pt brought by police after overdose threat", "Walk-in with acute SI after breakup", "Family reports escalating paranoia", "Panic episode in ED"),
        "risk": ("prior attempt, access to firearms", "recent loss, substance use", "male, lives alone", "chronic pain"),
        "protective": ("children at home, future orientation", "engaged in treatment, supportive sister", "religious faith", "employment"),
        "psych_dispo": ("voluntary admission", "discharge with crisis line and next-day f/u", "involuntary hold", "partial hospitalization program"),
        "group": ("DBT skills", "coping skills", "relapse prevention", "mindfulness"),
        "participation": ("participated actively", "quiet but attentive", "left early", "engaged with peers"),
        "cl_reason": ("delirium vs depression", "refusing dialysis", "agitation overnight", "capacity to leave AMA"),
        "capacity": ("intact for this decision", "lacks capacity at this time", "fluctuating, reassess"),
    },
    pii_fragments=("Emergency contact (sister {name}) at {phone}.", "Crisis plan shared with {name}, {email}."),
)

PULMONOLOGY = Specialty(
    "pulmonology",
    templates=(
        "{age}{sx} with {pulm_dx} p/w {pulm_cc}. SpO2 {spo2}% on {o2}. {lung_exam}. CXR {cxr}. ABG {abg}. Plan: {pulm_plan}.",
        "PFTs: FEV1 {fev1}% pred, FVC {fvc}% pred, FEV1/FVC {ratio}. DLCO {dlco}%. Interpretation: {pft_imp}.",
        "Bronchoscopy: {bronch}. BAL sent for {bal}. Tolerated well, no complications.",
        "Sleep clinic: {age}{sx}, BMI {bmi}. AHI {ahi}, nadir SpO2 {nadir}%. {osa_plan}.",
        "Pulm clinic f/u: {pulm_dx}, on {inhaler}. {exac} exacerbations in past year. {pulm_plan}. Smoking status: {smoking}.",
        "MICU note: {age}{sx} intubated for {resp_failure}. Vent: {vent}. PEEP {peep}, FiO2 {fio2}%. {icu_plan}.",
    ),
    vocab={
        "pulm_dx": ("COPD (GOLD 3)", "asthma", "IPF", "sarcoidosis", "bronchiectasis", "pulmonary HTN", "CAP", "PE"),
        "pulm_cc": ("increased dyspnea and sputum", "hemoptysis", "pleuritic CP", "chronic dry cough", "wheezing"),
        "o2": ("RA", "2L NC", "4L NC", "HFNC 40L/50%", "BiPAP 12/5"),
        "lung_exam": ("Diffuse expiratory wheezes", "Bibasilar velcro crackles", "Decreased BS at R base", "Clear bilaterally", "Prolonged expiratory phase"),
        "cxr": ("hyperinflation, no infiltrate", "RLL consolidation", "mod R pleural effusion", "reticular opacities at bases", "clear"),
        "abg": ("7.31/58/64", "7.44/34/72", "7.28/66/55", "not obtained"),
        "pulm_plan": ("duonebs q4h, prednisone 40 x5d, azithro", "CTPA, start heparin", "thoracentesis, send studies", "start antifibrotic (nintedanib)", "step up to ICS/LABA", "pulm rehab referral", "CT chest f/u in 3 mo"),
        "fev1": _num(28, 104),
        "fvc": _num(45, 110),
        "ratio": ("0.52", "0.61", "0.68", "0.78", "0.84"),
        "dlco": _num(30, 98),
        "pft_imp": ("moderate obstruction, + BD response", "restrictive pattern with reduced DLCO", "normal spirometry", "severe obstruction, no BD response"),
        "bronch": ("Airways patent, mucus plugging RLL cleared", "Endobronchial lesion LUL, biopsied", "EBUS-TBNA stations 4R, 7"),
        "bal": ("cx, AFB, fungal, cytology", "cell count and diff", "PJP DFA"),
        "bmi": _num(22, 46),
        "ahi": _num(3, 72),
        "nadir": _num(68, 92),
        "osa_plan": ("Start APAP 5-15 cm H2O", "Mild OSA, positional therapy + weight loss", "CPAP titration study", "Refer for oral appliance"),
        "inhaler": ("tiotropium", "budesonide/formoterol", "fluticasone/umeclidinium/vilanterol", "albuterol PRN only", "mepolizumab"),
        "exac": ("0", "1", "2", "3", "4"),
        "smoking": ("former, 40 pk-yr, quit 2015", "current 1 ppd, counseled", "never", "vapes daily"),
        "resp_failure": ("hypercapnic resp failure", "ARDS from pneumonia", "acute hypoxemic resp failure", "status asthmaticus"),
        "vent": ("AC/VC 420 x 18", "PRVC 6 mL/kg IBW", "PSV 10/5"),
        "peep": _num(5, 14),
        "fio2": _num(30, 80),
        "icu_plan": ("SAT/SBT in AM", "prone positioning", "cont vanc/cefepime", "diurese, goal even", "propofol for RASS -1"),
    },
    pii_fragments=("DME order for {name}, deliver to {address}.",),
)

DERMATOLOGY = Specialty(
    "dermatology",
    templates=(
        "Derm visit: {age}{sx} with {derm_cc} on {site} x {duration}. Exam: {lesion_desc}. Dermoscopy: {dermoscopy}. Dx: {derm_dx}. Plan: {derm_plan}.",
        "Procedure: shave biopsy of {site} lesion, {size} mm. Hemostasis with {hemostasis}. Path pending, will call with results. Wound care instructions given.",
        "Mohs note: {bcc} on {site}. {stages} stages to clear margins. Defect {defect} cm repaired with {repair}. Suture removal in 7 days.",
        "Total body skin exam: {tbse}. {derm_plan}. Sun protection counseling. RTC {followup}.",
        "Derm f/u: {derm_dx} on {derm_tx}. {derm_response}. Labs {derm_labs}. Continue and recheck in {followup}.",
        "Path result call: {site} biopsy showed {path_derm}. Discussed {derm_plan}.",
    ),
    vocab={
        "derm_cc": ("itchy rash", "changing mole", "scaly patches", "acne flare", "non-healing sore", "hair loss", "hives"),
        "site": ("L cheek", "R upper back", "scalp", "nasal ala", "dorsal hands", "L shin", "chest", "R forearm"),
        "lesion_desc": ("6 mm irregularly pigmented macule", "pearly papule with telangiectasias", "well-demarcated erythematous plaques with silvery scale", "comedones and inflammatory papules", "lichenified patches in flexures", "annular plaque with central clearing"),
        "dermoscopy": ("atypical network, regression", "arborizing vessels", "regular globules", "not performed", "white shiny structures"),
        "derm_dx": ("psoriasis", "atopic dermatitis", "BCC, nodular", "acne vulgaris", "seborrheic keratosis", "tinea corporis", "atypical nevus", "actinic keratoses", "rosacea"),
        "derm_plan": ("shave bx", "start dupilumab", "clobetasol 0.05% BID x2 wk", "tretinoin 0.025% qHS + BPO wash", "LN2 cryotherapy x6", "refer for Mohs", "WLE with 1 cm margins", "ketoconazole cream"),
        "size": _num(3, 12),
        "hemostasis": ("AlCl3", "electrocautery", "pressure"),
        "bcc": ("BCC, infiltrative", "SCC in situ", "nodular BCC"),
        "stages": ("1", "2", "3"),
        "defect": ("1.2 x 1.0", "1.8 x 1.5", "2.4 x 2.0"),
        "repair": ("linear closure", "bilobed flap", "FTSG from preauricular donor", "second intention"),
        "tbse": ("multiple benign-appearing nevi, solar lentigines", "one atypical nevus R back, bx", "numerous AKs on scalp", "no suspicious lesions"),
        "derm_tx": ("methotrexate 15 mg weekly", "isotretinoin 40 mg", "dupilumab q2wk", "adalimumab", "spironolactone 100 mg"),
        "derm_response": ("BSA improved from 12% to 2%", "near clear", "partial response, new lesions on elbows", "cheilitis, dryness"),
        "derm_labs": ("LFTs WNL", "iPLEDGE pregnancy test neg", "CBC normal", "lipids mildly elevated"),
        "path_derm": ("mildly atypical nevus, margins clear", "melanoma in situ", "SCC, well differentiated", "BCC, superficial", "spongiotic dermatitis"),
    },
    pii_fragments=("Path results to be emailed to {name} at {email}.",),
)

ENDOCRINOLOGY = Specialty(
    "endocrinology",
    templates=(
        "Endo clinic: {age}{sx} with {endo_dx}. A1c {a1c}% (prev {a1c2}%). On {dm_med}. CGM: TIR {tir}%, {cgm_pattern}. Plan: {endo_plan}.",
        "Thyroid f/u: {thyroid_dx}. TSH {tsh}, FT4 {ft4}. On {thyroid_med}. US: {thyroid_us}. Plan: {endo_plan}.",
        "Inpatient endocrine consult: {age}{sx} with {inpt_endo}. BG {bg} mg/dL. Recs: {insulin_recs}.",
        "Diabetes education: reviewed {dm_ed}. Pt demonstrates correct {technique}. Hypoglycemia plan reviewed. RTC {followup}.",
    ),
    vocab={
        "endo_dx": ("T2DM", "T1DM on pump", "T2DM with CKD", "prediabetes", "gestational DM"),
        "a1c": _dec(5.8, 11.9),
        "a1c2": _dec(6.0, 12.5),
        "dm_med": ("metformin 1000 BID", "semaglutide 1 mg weekly", "glargine 24u + lispro SSI", "tirzepatide 5 mg", "Omnipod 5"),
        "tir": _num(38, 92),
        "cgm_pattern": ("post-prandial spikes after dinner", "nocturnal lows", "dawn phenomenon", "no hypoglycemia"),
        "endo_plan": ("increase basal 10%", "add empagliflozin", "titrate semaglutide to 2 mg", "FNA of dominant nodule", "repeat TSH in 6 wks", "refer to DSMES"),
        "thyroid_dx": ("Hashimoto's hypothyroidism", "Graves disease", "multinodular goiter", "s/p total thyroidectomy for PTC"),
        "tsh": _dec(0.01, 12.0, 2),
        "ft4": _dec(0.6, 3.4),
        "thyroid_med": ("levothyroxine 88 mcg", "methimazole 10 mg", "levothyroxine 125 mcg"),
        "thyroid_us": ("1.6 cm TR4 nodule R lobe", "heterogeneous gland", "no nodules", "stable 8 mm TR3 nodule"),
        "inpt_endo": ("DKA, AG closed", "steroid-induced hyperglycemia", "HHS", "hypoglycemia on sulfonylurea"),
        "bg": _num(54, 520),
        "insulin_recs": ("transition to SQ basal-bolus, overlap gtt 2h", "NPH with AM steroid dose", "d/c glipizide, D10 gtt", "insulin gtt per protocol"),
        "dm_ed": ("carb counting", "sick day rules", "CGM sensor placement", "foot care"),
        "technique": ("pen injection", "sensor insertion", "glucagon use"),
    },
    pii_fragments=("Pump supplier contact for {name}: {phone}.",),
)

# Order matters: hospital-00 is cardiology, hospital-01 oncology, ... (cycled when clients > specialties).
SPECIALTIES: tuple[Specialty, ...] = (
    CARDIOLOGY,
    ONCOLOGY,
    PEDIATRICS,
    ORTHOPEDICS,
    NEUROLOGY,
    PSYCHIATRY,
    PULMONOLOGY,
    DERMATOLOGY,
    ENDOCRINOLOGY,
)
SPECIALTY_NAMES: tuple[str, ...] = tuple(s.name for s in SPECIALTIES)

# Identifier fragments shared by every department; {..} are filled by :class:`PIIFactory`.
SHARED_PII_FRAGMENTS: tuple[str, ...] = (
    "Pt: {name}, {mrn}, DOB {dob}.",
    "Patient {name} ({mrn}).",
    "{name}, DOB {dob}.",
    "Seen {date} by Dr. {doctor}.",
    "Admitted {date}; attending Dr. {doctor}.",
    "Contact {relation} {name2} at {phone}.",
    "Pt phone {phone}.",
    "Home address: {address}.",
    "Portal email {email}.",
    "{mrn} / {name} / seen {date}.",
    "Discharged {date} to home ({address}).",
)

_RELATIONS = ("wife", "husband", "daughter", "son", "mother", "father", "partner", "sister", "brother")


class HospitalGenerator:
    """Generates the notes of one department (client). One instance = one client stream."""

    def __init__(self, specialty: Specialty, rng: random.Random) -> None:
        self.specialty = specialty
        self.rng = rng
        self.filler = Filler(rng, specialty.vocab, COMMON_VOCAB)
        # Each hospital keeps its own MRN / phone / date formats, like a real EHR would.
        self.pii = PIIFactory(
            rng,
            mrn_style=rng.choice(MRN_STYLES),
            phone_style=rng.choice(PHONE_STYLES),
            date_style=rng.choice(DATE_STYLES[:4]),
        )
        self.fragments = SHARED_PII_FRAGMENTS + specialty.pii_fragments

    def _fill_fragment(self, template: str) -> tuple[str, list[tuple[str, str]]]:
        planted: list[tuple[str, str]] = []
        pii = self.pii
        values: dict[str, str] = {}

        def put(key: str, kind: str, value: str) -> None:
            values[key] = value
            planted.append((kind, value))

        if "{name}" in template:
            first, last = pii.first_name(), pii.last_name()
            put("name", "PERSON", f"{first} {last}")
            if "{email}" in template:
                put("email", "EMAIL", pii.email(first, last))
        if "{name2}" in template:
            put("name2", "PERSON", pii.full_name())
        if "{email}" in template and "email" not in values:
            put("email", "EMAIL", pii.email())
        if "{mrn}" in template:
            label, ident = pii.mrn()
            planted.append(("MRN", ident))
            values["mrn"] = label + ident
        if "{dob}" in template:
            put("dob", "DATE", pii.dob())
        if "{date}" in template:
            put("date", "DATE", pii.date())
        if "{doctor}" in template:
            put("doctor", "PERSON", pii.clinician_name())
        if "{phone}" in template:
            put("phone", "PHONE", pii.phone())
        if "{address}" in template:
            put("address", "LOCATION", pii.address())
        values["relation"] = self.rng.choice(_RELATIONS)
        return template.format(**values), planted

    def record(self, with_pii: bool) -> Record:
        rng = self.rng
        body = squeeze_spaces(self.filler.fill(rng.choice(self.specialty.templates)))
        if not with_pii:
            return Record(body)
        n_frag = 1 if rng.random() < 0.7 else 2
        planted: list[tuple[str, str]] = []
        parts = [body]
        for template in rng.sample(self.fragments, n_frag):
            text, found = self._fill_fragment(template)
            planted.extend(found)
            if rng.random() < 0.6:
                parts.insert(0, text)
            else:
                parts.append(text)
        text = " ".join(parts)
        return Record(text, locate_spans(text, planted))


def specialty_for(index: int) -> Specialty:
    return SPECIALTIES[index % len(SPECIALTIES)]
