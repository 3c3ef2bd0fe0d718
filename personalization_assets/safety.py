"""Embedded safety screen: harm severities, blocklists, marketing compliance rules, one decision.

The shape mimics Azure AI Content Safety (`text:analyze`): four harm categories, each scored on
the 0/2/4/6 severity scale (safe/low/medium/high), plus custom blocklists. The Azure backend
replaces only `classify_text` and the blocklist matching with the service's answer and calls the
same `decide`, so both backends block on exactly the same policy.

The classifier is a lexicon: per category, tables of phrases with a severity each. Single words
that marketing copy uses figuratively ("killer", "shoot", "sexy") score at most Low; Medium and
High need context (a target, an intent, a method). Benign idioms are matched first, and a harmful
match lying entirely inside one is ignored, so "to die for" stays safe while "I want you to die
for this" does not.

Pure logic: no Dagster import. A campaign has a few dozen variants, so plain regex loops are fine;
the patterns are compiled once, at import.
"""

from __future__ import annotations

import functools
import numbers
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

from personalization_assets.prompts import MERGE_FIELDS

CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
SAFE, LOW, MEDIUM, HIGH = 0, 2, 4, 6
SEVERITY_LEVELS = (SAFE, LOW, MEDIUM, HIGH)
# Azure's EightSeverityLevels output uses 0..7; anything else is not a severity.
_MAX_SEVERITY = 7

# --------------------------------------------------------------------------------------------
# Text normalization
# --------------------------------------------------------------------------------------------

# Generated copy is full of typographic quotes and dashes; the lexicon is written in ASCII.
_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
# Zero-width characters would otherwise split a word in two and hide it from every pattern.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff]")


def _normalize(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHIC))


def _comparable(text: str) -> str:
    """Lower case, punctuation folded to single spaces: 'Hurry, only 2 left!' -> ' hurry only 2 left '.

    Used to ask whether a claim in the copy is quoted by the source documents.
    """
    return " " + " ".join(re.sub(r"[^\w%$]+", " ", _normalize(text).lower()).split()) + " "


# --------------------------------------------------------------------------------------------
# Category lexicon
# --------------------------------------------------------------------------------------------

# Placeholders expanded inside the phrases below, so each table row reads like what it catches.
_PROTECTED_GROUPS = (
    "immigrants", "migrants", "refugees", "asylum seekers", "foreigners", "muslims", "jews",
    "jewish people", "christians", "catholics", "hindus", "sikhs", "buddhists", "atheists",
    "black people", "blacks", "white people", "whites", "asians", "asian people", "latinos",
    "hispanics", "mexicans", "arabs", "africans", "indians", "chinese people", "roma", "gypsies",
    "gay people", "gays", "lesbians", "homosexuals", "bisexuals", "trans people",
    "transgender people", "queer people", "women", "girls", "disabled people", "the disabled",
    "old people", "the elderly", "indigenous people", "natives",
)
_PLACEHOLDERS = {
    # A possessive ("women's jackets") names a product line, not the group.
    "{group}": r"(?:(?:all|the|these|those|most) )*(?:" + "|".join(_PROTECTED_GROUPS) + ")(?!')",
    "{dehumanising}": (
        r"(?:vermin|animals|beasts|parasites|rats|cockroaches|insects|pigs|apes|monkeys|savages"
        r"|subhuman|sub-human|less than human|not (?:even )?human|a disease|a plague|a cancer"
        r"|an infestation|a virus|filth|scum|trash|garbage)"
    ),
    "{inferior}": (
        r"(?:inferior|stupid|dirty|filthy|criminals|thieves|terrorists|rapists|lazy|useless|worthless|evil"
        r"|disgusting|degenerates?|primitive|barbaric|an abomination|a waste of space|a burden|a threat|the problem)"
    ),
    # Who a threat or an incitement is aimed at: people, never things ("attack the trail").
    "{person}": (
        r"(?:you|him|her|them|'em|someone|somebody|anyone|anybody|everyone|everybody|people"
        r"|those people|your (?:whole )?(?:family|kids|children|wife|husband)"
        r"|(?:the|that|this) (?:staff|manager|owner|cashier|customers?|protesters|picketers|police|cops"
        r"|guards?|neighbou?rs|guy|man|woman))"
    ),
}

# Severity tables, per category. Phrases are regular expressions, matched case-insensitively on
# word boundaries; a space matches any run of whitespace.
_LEXICON: dict[str, dict[int, tuple[str, ...]]] = {
    "Hate": {
        HIGH: (  # calls to harm or remove a protected group
            # Not "shoot"/"burn"/"hang"/"will": "shoot the women's team", "women will burn more calories".
            r"(?:exterminate|eradicate|wipe out|get rid of|purge|gas|kill|lynch) {group}",
            r"{group}[^.!?\n]{0,60}?(?:should|must|need to|ought to|deserve to|have to) (?:all )?"
            r"(?:die|be (?:killed|exterminated|wiped out|eradicated|gassed|hanged|lynched|shot dead))",
            r"ethnic cleansing", r"race war", r"final solution", r"heil hitler",
        ),
        MEDIUM: (  # dehumanising, inferiorising, exclusion; slurs
            r"{group} (?:are|is) (?:(?:all|just|nothing but|no better than|like|basically|a bunch of) )*{dehumanising}",
            r"{group} (?:are|is) (?:(?:all|so|naturally|genetically|inherently|basically) )*{inferior}",
            r"(?:i|we) (?:hate|despise|can't stand|cannot stand|loathe) {group}",
            r"no {group} (?:allowed|welcome)", r"(?:ban|deport|keep out) {group}",
            r"{group} (?:are|is) not (?:welcome|allowed)", r"{group} (?:don't|do not|doesn't) belong",
            # The group and what should be done to it, anywhere in the same sentence.
            r"{group}[^.!?\n]{0,60}?(?:should|must|need to|ought to) (?:all )?(?:be (?:banned|deported|kicked out|locked up|sterili[sz]ed)|not be allowed)",
            r"keep (?:the )?{group} out",
            r"{group} (?:are )?(?:taking over|replacing us|invading|infesting)",
            r"{group} (?:are|is) (?:ruining|destroying|poisoning) (?:this|our|the) (?:country|nation|city|town|neighbou?rhood)",
            r"{group} (?:should|must|need to) (?:all )?(?:leave|go home|go back|get out)",
            r"{group} belongs? (?:in the kitchen|at home|in (?:a|their) cages?)",
            r"{group} control (?:the|our) (?:banks|media|government|world|economy)",
            r"go back to (?:where you came from|your (?:own )?country|your own kind)",
            r"master race", r"racially inferior", r"white power", r"subhumans?", r"sub-humans?", r"illegals",
            # A short list of slurs; deployments extend it through a policy blocklist.
            r"n[i1]gg(?:er|a)s?", r"kikes?", r"wetbacks?", r"towelheads?", r"ragheads?", r"chinks?",
            r"spics?", r"gooks?", r"pakis", r"faggots?", r"retards?", r"retarded",
        ),
        LOW: (r"those people", r"you people", r"typical {group}"),
    },
    "SelfHarm": {
        HIGH: (  # encouragement, instructions and methods
            r"(?:you should|go|just|just go|go and|why don't you|why not|then) (?:kill|hang|hurt|cut|starve|harm|shoot|drown) yourself",
            r"(?:you should|go|just|just go|go and|why don't you|why not) end (?:it|it all|your (?:own )?life)",
            r"kys", r"kill yourself", r"starve yourself",
            r"(?:you should|go|just|why don't you) (?:go )?jump off (?:a|the) (?:bridge|roof|building|cliff)",
            r"(?:best|easiest|quickest|fastest|surest|painless|least painful) (?:ways?|methods?) to "
            r"(?:die|kill (?:myself|yourself)|commit suicide|end (?:it|it all|my life|your life)|overdose)",
            r"how (?:to|do i|can i|do you) (?:kill|hang|hurt|cut|poison) (?:myself|yourself)",
            r"how many (?:pills|tablets) (?:to|does it take|would it take|will it take|until)",
            r"lethal dose", r"hang myself", r"slit(?:ting)? (?:my|your) wrists",
            r"(?:take|swallow) (?:all|all of|a whole bottle of|the whole bottle of) (?:the |your |my |those |these )?(?:pills|tablets|meds|medication)",
            r"nobody would (?:miss|care about) you", r"no one would (?:miss|care about) you",
            r"(?:the world|everyone|we|your family) (?:would be|is|are|'d be) better (?:off )?without you",
            r"(?:you'd|you would|you are|you're) better off dead",
            r"do (?:everyone|us all|the world) a favou?r and (?:die|disappear|end it)",
            r"purge after (?:every meal|eating|meals|you eat)",
            r"hide (?:my |your |the )?(?:cuts|scars|self-harm|bruises) from",
        ),
        MEDIUM: (  # first-person intent, ideation, eating-disorder promotion
            r"kill(?:ing)? myself", r"end(?:ing)? my (?:own )?life", r"end it all", r"suicidal",
            r"i (?:just |really )?(?:want|wanna) (?:to )?die", r"wish i (?:was|were) dead", r"better off dead",
            r"not worth living", r"no reason to (?:live|go on)", r"(?:commit|committing|attempted) suicide",
            r"cutting myself", r"cut myself (?:again|on purpose|deliberately|to (?:feel|cope))",
            r"harm(?:ing)? myself", r"hurt(?:ing)? myself (?:on purpose|again|deliberately)",
            r"hurting myself (?:is|helps|makes)", r"(?:want|wanted|going|try|trying|urge) to hurt myself",
            r"self-harming", r"starve myself", r"pro-ana", r"thinspo", r"thinspiration",
            r"(?:plan|planning|going|ready|want|decided) to end (?:it|it all|my life|things)",
            r"(?:don't|do not) want to (?:be alive|live|exist|wake up) (?:anymore|any more)", r"(?:don't|do not) want to be alive",
            r"(?:cutting|burning|hurting) (?:myself )?(?:is|was) (?:the only|how i) (?:thing|way|cope)",
            r"(?:stop|quit|skip) eating (?:for|until) (?:a |\d+ |two |three |several )?(?:days?|weeks?|you)",
            r"skip(?:ping)? (?:all )?meals (?:to|until)",
            r"(?:eat|eating) (?:under|less than|only|no more than) \d{2,3} calories (?:a|per) day",
            r"(?:everyone|everybody|people|my family) would be (?:happier|better off) (?:if i (?:was|were) (?:gone|dead)|without me)",
            r"(?:hope|hoping|wish|want|wanting) (?:i )?(?:not to|never to|to never|won't|wouldn't|don't) wake up",
            r"took (?:a bunch of|all (?:my|the)|too many|a handful of) (?:pills|tablets)", r"done with (?:life|living)",
        ),
        LOW: (
            r"suicide", r"self-harm", r"self harm", r"self-injury", r"depressed", r"hopeless", r"eating disorder",
            r"overdos(?:e|ed|ing)", r"life is (?:pointless|meaningless)",
        ),
    },
    "Sexual": {
        HIGH: (  # explicit content, minors, sexual violence
            r"(?:explicit|hardcore|graphic) (?:sex|porn\w*|sexual)",
            r"(?:sex|sexual|nude|naked) (?:\w+ )?(?:with|of|involving|pictures of|photos of) (?:a )?(?:minors?|children|child|kids|underage)",
            r"child (?:porn\w*|sexual abuse)", r"underage (?:girls|boys|sex|nudes|models)",
            r"(?:teen|teenage|underage|young) (?:girls|boys) (?:\w+ ){0,3}?(?:sexy|naked|nude|topless|in lingerie)",
            r"(?:sexy|naked|nude|topless) (?:teens?|teenagers?|schoolgirls?|underage)",
            r"rap(?:e|ed|es|ing)", r"sexual(?:ly)? (?:assault\w*|abuse\w*)", r"molest\w*", r"incest",
            r"forced (?:himself|herself|themselves) on",
        ),
        MEDIUM: (  # sexual solicitation and adult content
            r"porn\w*", r"xxx", r"nsfw", r"(?:send|share|post|leaked|your|my|her|his) nudes",
            r"nude (?:photos|pics|pictures|selfies|videos|models|girls|women|men)",
            r"(?:get|got|getting) naked", r"topless", r"in the nude", r"nude beach", r"strippers?", r"slut\w*", r"whores?",
            r"(?:webcam|cam) (?:girls|models|strippers|shows)", r"(?:spicy|naughty|sexy) (?:pics|photos|pictures|videos|selfies)",
            # Dating spam; plain "women near you" is a hiking-group invitation.
            r"(?:(?:hot|lonely|horny|sexy) (?:girls|women|men)|wives|housewives|singles) (?:in your area|near you)",
            r"naked (?:photos|pics|pictures|selfies|videos|girls|women|men|bodies|campers|hikers|people|models|strangers|singles)",
            r"(?:videos?|photos?|pics|pictures|images) of naked", r"(?:hot|sexy|lonely|local) singles",
            r"(?:wanna|want to|come|will you|would you) sleep with me", r"(?:show|send) me (?:your|a (?:pic|photo) of your) body",
            r"(?:have|having|had) sex", r"hook(?:ing)? up (?:tonight|now|with)",
            r"one-night stand", r"one night stand", r"horny", r"erotic\w*",
            r"sex (?:chat|cams?|toys?|tapes?|videos?|shows?|lines?)", r"cam ?girls?", r"onlyfans",
            r"escort (?:service|services|agency|agencies|girls)", r"(?:sexual|intimate) (?:favou?rs|services)",
            r"strip (?:club|tease)", r"striptease", r"adult (?:content|videos?|entertainment|sites?)",
            r"sexting", r"booty call", r"orgasm\w*", r"fetish\w*",
        ),
        LOW: (
            r"sexy", r"sensual", r"seductive", r"steamy", r"naughty", r"lingerie", r"flirt(?:y|ing)?", r"sultry",
            r"saucy", r"risqu[eé]", r"kinky", r"hot date",
        ),
    },
    "Violence": {
        HIGH: (  # threats, incitement, attack planning
            r"(?:i|we)(?:'ll|'m going to|'re going to|'m gonna|'re gonna| will| am going to| are going to| gonna| want to| would love to)"
            r" (?:find and )?(?:kill|shoot|stab|murder|hurt|strangle|burn|bomb|torture|beat up|hunt down) {person}",
            r"(?:i|we)(?:'ll|'m going to|'re going to|'m gonna|'re gonna| will| am going to| are going to| gonna) hunt {person} down",
            r"(?:put|pump) (?:a )?bullets? (?:in|into|through)", r"kill (?:every|each) (?:last|single) one",
            r"coming (?:to|for) (?:you|your \w+) (?:\w+ ){0,2}?with (?:a|my) (?:gun|knife|bat|baseball bat|machete|rifle|shotgun|weapon)",
            r"(?:i|we) (?:want|hope|wish) (?:you|they|he|she) (?:to )?(?:die|dies|dead)",
            r"(?:let's|lets|we should|you should|everyone should|go) (?:go )?(?:attack|kill|shoot|stab|lynch|beat up|hurt|assault) {person}",
            r"we know where you live", r"(?:you|they) (?:will|'ll) pay (?:for this )?with (?:your|their) lives?",
            r"shoot(?:ing)? up (?:a|the|your|this|that|their) (?:school|office|store|shop|mall|church|mosque|synagogue|temple|concert|party|warehouse)",
            r"(?:bomb|blow up|burn down|torch|firebomb) (?:the|your|this|that|their|our|his|her) (?:[\w']+ )?"
            r"(?:store|shop|mall|office|building|school|house|home|church|mosque|synagogue|temple|warehouse|car|station"
            r"|airport|stadium|hospital|bank|hotel|restaurant|bar|club|campsite|event)",
            r"(?:plant|planting|set off|detonate) (?:a|the) (?:bomb|device|explosive)",
            r"how (?:to|do i|do you|can i|can you) (?:make|build) (?:a|an) (?:pipe |nail |car )?(?:bomb|explosive device|ied)",
            r"(?:deserves?|ought) to be (?:shot|killed|hanged|hung|beaten|stabbed|executed|lynched|murdered)",
            r"(?:should|must) (?:all )?be (?:killed|hanged|executed|lynched|murdered|shot dead|shot on sight)",
            r"gun {person} down", r"mass shooting", r"behead\w*", r"slit (?:your|his|her|their) throats?",
        ),
        MEDIUM: (  # graphic or targeted violence, intimidation
            r"beat {person} (?:up|senseless|to a pulp|black and blue)",
            r"beat the (?:crap|hell|living daylights) out of", r"punch {person} in the (?:face|mouth|teeth)",
            r"break (?:your|his|her|their) (?:legs?|neck|arms?|jaw|nose|face)",
            r"smash (?:your|his|her|their) (?:faces?|skulls?|heads?|teeth)",
            r"stab(?:s|bed|bing)? {person}", r"shot {person} dead",
            r"(?:kill|killed|killing|murder|murdered|murdering) (?:people|someone|somebody|civilians|innocent people|children|kids|a man|a woman)",
            r"(?:strangle|strangled|strangling|choke|choked|choking) {person}", r"assault(?:ed|ing)? {person}",
            r"(?:violent|armed) (?:attack|assault|robbery)", r"terrorist attacks?", r"execution-style",
            # Bare "torture" and "hostage" are marketing hyperbole ("held hostage by the weather").
            r"tortur(?:e|ed|es|ing) (?:{person}|(?:the )?(?:hostages|prisoners|victims|animals))",
            r"lynch(?:ed|ing)", r"lynch mob", r"massacre[ds]?",
            r"accidents (?:can |could |might |will )?happen to (?:people|you|those) who",
            r"(?:and|or) see what happens to your (?:car|house|home|family|kids|store|shop)",
            r"deserves? (?:a|to get a) (?:beating|bullet|slap|punch)",
            r"shame if something (?:bad )?(?:happened|were to happen) to (?:you|your)",
        ),
        LOW: (  # violent words that marketing also uses figuratively
            r"kill(?:s|ed|ing|er|ers)?", r"shoot(?:s|ing)?", r"shot", r"guns?", r"weapons?", r"bombs?",
            r"knife", r"knives", r"fight(?:s|ing)?", r"attack(?:s|ed)?", r"blood(?:y)?", r"die[ds]?", r"dying",
            r"dead(?:ly)?", r"murder(?:s|ed)?", r"punch(?:ed)?", r"stab", r"war", r"violen(?:t|ce)", r"explosives?",
            r"tortur(?:e|ed|es|ing)", r"hostages?", r"bloodbath",
        ),
    },
}

# Figurative uses of lexicon words. A harmful match that lies entirely inside one is ignored.
_BENIGN_IDIOMS = (
    r"killer (?:deals?|prices?|views?|looks?|style|features?|combos?|offers?|savings|value|app)",
    r"killing it", r"(?:we'd|we would|i'd|i would|you'd|you would) kill for (?:this|that|a|the|these|those)",
    r"kill (?:them|'em|him|her) with kindness", r"kill two birds with one stone",
    r"shoot (?:us|me) (?:an? )?(?:email|message|line|note|text|dm)", r"photo ?shoots?",
    r"shoot(?:ing)? (?:photos|video|pictures|stunning photos)",
    r"drop-dead (?:gorgeous|stunning|beautiful)", r"to die for",
    r"dying to (?:try|see|get|know|show|hear|meet)", r"die (?:of|from) (?:laughter|laughing|envy|jealousy|happiness)",
    r"(?:you're|you are|you'll|you will) (?:going to |gonna )?(?:absolutely )?die (?:when|once|after|the moment) you (?:see|try|hear|taste)",
    r"bomb-?proof", r"attack (?:the|that|this|those|your) (?:trail|hills?|climb|summit|mountain|slopes?|day|week|weekend|workout|list)",
    r"(?:don't|do not|never|no need to) (?:starve|kill|hurt|wear out|exhaust) yourself",
    r"cut yourself (?:some slack|a (?:slice|piece|break))",
    r"chinks? in (?:the|your|its|their) armou?r", r"spick? and span", r"(?:oilseed|oil seed) rape",
    r"(?:food|gear|travel) porn", r"(?:paint|wire|wax) strippers?",
)


def _compile_phrase(phrase: str) -> re.Pattern[str]:
    for placeholder, expansion in _PLACEHOLDERS.items():
        phrase = phrase.replace(placeholder, expansion)
    # " ?" is optional whitespace, any other space one or more whitespace characters.
    phrase = phrase.replace(" ?", r"\s*").replace(" ", r"\s+")
    # Lookarounds rather than \b: some phrases start or end with an apostrophe or a hyphen.
    return re.compile(r"(?<!\w)(?:" + phrase + r")(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class _LexiconEntry:
    category: str
    severity: int
    pattern: re.Pattern[str]


# Highest severity first, so a category stops being searched once nothing higher can match.
_LEXICON_ENTRIES = tuple(
    sorted(
        (
            _LexiconEntry(category, severity, _compile_phrase(phrase))
            for category, tiers in _LEXICON.items()
            for severity, phrases in tiers.items()
            for phrase in phrases
        ),
        key=lambda entry: -entry.severity,
    )
)
_BENIGN_IDIOM_PATTERNS = tuple(_compile_phrase(phrase) for phrase in _BENIGN_IDIOMS)


def classify_text(text: str) -> dict[str, int]:
    """Azure-shaped severities (0/2/4/6) per category for one text."""
    normalized = _normalize(text)
    benign_spans = [m.span() for pattern in _BENIGN_IDIOM_PATTERNS for m in pattern.finditer(normalized)]

    def outside_idioms(match: re.Match[str]) -> bool:
        start, end = match.span()
        return not any(idiom_start <= start and end <= idiom_end for idiom_start, idiom_end in benign_spans)

    severities = dict.fromkeys(CATEGORIES, SAFE)
    for entry in _LEXICON_ENTRIES:
        if entry.severity > severities[entry.category] and any(
            outside_idioms(match) for match in entry.pattern.finditer(normalized)
        ):
            severities[entry.category] = entry.severity
    return severities


# --------------------------------------------------------------------------------------------
# Blocklists
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _blocklist_term_pattern(term: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(word) for word in _normalize(term).split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def find_blocklist_hits(text: str, blocklists: Mapping[str, Sequence[str]]) -> list[str]:
    """Whole-word, case-insensitive blocklist matches as "listname:term", in blocklist order."""
    normalized = _normalize(text)
    hits = (
        f"{list_name}:{term}"
        for list_name, terms in blocklists.items()
        for term in terms
        if _blocklist_term_pattern(term).search(normalized)
    )
    return list(dict.fromkeys(hits))


# --------------------------------------------------------------------------------------------
# Marketing compliance rules
# --------------------------------------------------------------------------------------------


def _compile_claims(*phrases: str) -> re.Pattern[str]:
    return _compile_phrase("|".join(f"(?:{phrase})" for phrase in phrases))


@dataclass(frozen=True)
class _Claim:
    """A kind of claim that is allowed only when the cited documents back it."""

    pattern: re.Pattern[str]
    # A deadline ("ends tonight") is also backed by a document that states its end date; counts
    # of stock or hours are backed only by a document that says exactly that.
    backed_by_end_date: bool = False


_GUARANTEE_CLAIMS = (
    _Claim(
        _compile_claims(  # longest forms first, so the phrase looked up in the source is the whole claim
            r"\d+ ?% satisfaction guaranteed(?: results)?",
            r"guaranteed (?:results|returns|income|profits?|weight loss|to \w+)",
            r"(?:\d+-(?:day|month|year) )?(?:money-back|money back|lifetime|price-match|price match|satisfaction|best-price|best price) guarantee",
            r"satisfaction guaranteed", r"guarantee[ds]?", r"risk-free", r"risk free", r"no risk",
            r"you will lose \d+ (?:pounds|lbs?|kg|kilos|kilograms|stone)",
        )
    ),
)
_URGENCY_CLAIMS = (
    _Claim(
        _compile_claims(  # stock levels and countdowns
            r"hurry,? only \d+(?: left| remaining)?", r"only \d+ (?:left|remaining)(?: in stock)?",
            r"only a few left", r"(?:almost|nearly) sold out", r"selling (?:out )?fast",
            r"(?:expires|ends|ending) in \d+ (?:hours?|hrs?|minutes?|mins?)",
            r"\d+ (?:hours?|hrs?|minutes?|mins?) (?:left|only|to go)", r"in the next \d+ (?:hours?|minutes?)",
        )
    ),
    _Claim(
        _compile_claims(
            r"last chance", r"(?:today|this weekend|one day|this day) only",
            r"(?:ends|ending) (?:tonight|today|at midnight|soon)", r"final (?:hours|day|days)",
            r"now or never", r"(?:deals?|offers?|sales?|prices?) won't last",
        ),
        backed_by_end_date=True,
    ),
)
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DATE = rf"(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?)"
_END_DATE_STATEMENT = _compile_phrase(
    r"(?:ends?|ending|until|till|through|thru|expires?|expiring|closes?|valid (?:until|through|to)"
    rf"|runs (?:until|through|to)|available (?:until|through)) (?:on )?(?:\w+day,? )?{_DATE}"
)
_DISEASES = (
    r"(?:cancer|diabetes|arthritis|diseases?|illness(?:es)?|depression|anxiety|asthma|covid|infections?"
    r"|insomnia|dementia|alzheimer's|high blood pressure|obesity|joint pain|back pain|chronic pain)"
)
_HEALTH_FINANCIAL_PROMISE = _compile_claims(
    rf"(?:cures?|cured|treats?|heals?|reverses?|prevents?) (?:\w+ ){{0,2}}?{_DISEASES}",
    r"miracle cure", r"clinically proven to", r"boosts? (?:your )?immun(?:e system|ity)",
    r"lose (?:weight|\d+ (?:pounds|lbs?|kg|kilos|kilograms|stone))", r"(?:burn|melt) (?:belly )?fat",
    r"get rich", r"guaranteed (?:returns|income|profits?)", r"double your money", r"financial freedom",
    r"passive income",
    # "Earn $10 in store credit" is a loyalty reward, not an income promise. The atomic group
    # stops the amount from being shortened to dodge the look-ahead.
    r"earn (?:up to )?(?>\$ ?\d[\d,]*(?:\.\d+)?k?)(?! (?:in )?(?:store |reward |bonus )?(?:credit|rewards?|points|off|back|vouchers?|gift cards?))",
    r"make (?:up to )?\$ ?\d[\d,]*k? (?:a|per|every) (?:day|week|month|hour)",
)
_PLACEHOLDER_PATTERNS = (
    # [Your Company Name], [Name]: letters only, so "[DOC-001]" ids and "[Shop](url)" links pass.
    re.compile(r"\[[A-Za-z][A-Za-z .'/&_-]{0,40}\](?!\()"),
    re.compile(r"<\s*(?:[A-Z][A-Z0-9_]{2,}(?: [A-Z0-9_]+)*|(?i:insert|your)\b[^<>]{0,40})\s*>"),  # <FIRST NAME>
    re.compile(r"\binsert\b[^.\n]{0,40}?\bhere\b", re.IGNORECASE),
    re.compile(r"\blorem ipsum\b", re.IGNORECASE),
    re.compile(r"\b(?:TODO|TBD|FIXME)\b"),
    re.compile(r"(?<!\{)\{[A-Za-z_]\w*\}(?!\})"),  # a str.format field nobody filled
    re.compile(r"%\(\w+\)s"),
)
_MERGE_FIELD = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
ALLOWED_MERGE_FIELDS = frozenset(MERGE_FIELDS)
_URL = re.compile(r"""\bhttps?://[^\s<>"'()\[\]{}]+|\bwww\.[^\s<>"'()\[\]{}]+""", re.IGNORECASE)


def find_urls(text: str) -> list[str]:
    """Every http(s) URL and bare www. domain, without trailing sentence punctuation."""
    return [match.group(0).rstrip(".,;:!?") for match in _URL.finditer(text)]


def find_placeholders(text: str) -> list[str]:
    """Template leftovers a customer must never see; the allowed merge fields are not among them."""
    found = [m.group(0) for pattern in _PLACEHOLDER_PATTERNS for m in pattern.finditer(text)]
    found += [m.group(0) for m in _MERGE_FIELD.finditer(text) if m.group(1) not in ALLOWED_MERGE_FIELDS]
    return found


@dataclass(frozen=True)
class _Draft:
    """What the compliance rules look at for one variant."""

    raw_text: str  # subject and body as written: URLs are compared exactly
    text: str  # normalized, for phrase patterns
    source: str  # the cited documents' text, in `_comparable` form
    source_states_end_date: bool
    approved_urls: frozenset[str]
    citations: tuple[str, ...]
    retrieved_ids: frozenset[str]


def _has_unbacked_claim(claims: Iterable[_Claim], draft: _Draft) -> bool:
    return any(
        _comparable(match.group(0)) not in draft.source
        and not (claim.backed_by_end_date and draft.source_states_end_date)
        for claim in claims
        for match in claim.pattern.finditer(draft.text)
    )


_COMPLIANCE_RULES: dict[str, Callable[[_Draft], bool]] = {
    "unverifiable_guarantee": lambda d: _has_unbacked_claim(_GUARANTEE_CLAIMS, d),
    "false_urgency": lambda d: _has_unbacked_claim(_URGENCY_CLAIMS, d),
    "health_financial_promise": lambda d: _HEALTH_FINANCIAL_PROMISE.search(d.text) is not None,
    "unresolved_placeholder": lambda d: bool(find_placeholders(d.text)),
    "unapproved_url": lambda d: any(url not in d.approved_urls for url in find_urls(d.raw_text)),
    "citation_not_retrieved": lambda d: any(doc_id not in d.retrieved_ids for doc_id in d.citations),
    "missing_citation": lambda d: not d.citations,
}
COMPLIANCE_RULE_IDS = tuple(sorted(_COMPLIANCE_RULES))


def find_compliance_hits(
    subject: str,
    body: str,
    *,
    approved_urls: Collection[str],
    citations: Collection[str],
    retrieved_ids: Collection[str],
    source_text: str,
) -> list[str]:
    """Sorted ids of the marketing compliance rules the variant breaks.

    `source_text` is the text of the cited approved documents: a guarantee or urgency claim is
    allowed when those documents make it themselves.
    """
    raw_text = f"{subject}\n{body}"
    draft = _Draft(
        raw_text=raw_text,
        text=_normalize(raw_text),
        source=_comparable(source_text),
        source_states_end_date=_END_DATE_STATEMENT.search(_normalize(source_text)) is not None,
        approved_urls=frozenset(approved_urls),
        citations=tuple(citations),
        retrieved_ids=frozenset(retrieved_ids),
    )
    return [rule_id for rule_id, is_broken in sorted(_COMPLIANCE_RULES.items()) if is_broken(draft)]


# --------------------------------------------------------------------------------------------
# Policy and decision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SafetyPolicy:
    block_severity: int = MEDIUM  # Azure's own default filter level
    blocklists: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    policy_version: str

    def __post_init__(self) -> None:
        if not 1 <= self.block_severity <= _MAX_SEVERITY:
            raise ValueError(f"block_severity must be between 1 and {_MAX_SEVERITY}, got {self.block_severity}")
        frozen: dict[str, tuple[str, ...]] = {}
        for list_name, terms in self.blocklists.items():
            # A bare string would be read as a list of letters; a blank term would match everywhere.
            if isinstance(terms, str) or any(not str(term).strip() for term in terms):
                raise ValueError(f"blocklist {list_name!r} must be a list of non-blank terms, got {terms!r}")
            frozen[str(list_name)] = tuple(str(term) for term in terms)
        object.__setattr__(self, "blocklists", MappingProxyType(frozen))


@dataclass(frozen=True)
class SafetyDecision:
    decision: Literal["approved", "blocked"]
    reasons: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.decision == "blocked"


def _is_severity(value: object) -> bool:
    # numbers.Integral also accepts numpy integers read back from a DataFrame; bool is not a severity.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= _MAX_SEVERITY


def decide(
    severities: Mapping[str, int] | None,
    blocklist_hits: Iterable[str],
    rule_hits: Iterable[str],
    policy: SafetyPolicy,
    *,
    service_error: str | None = None,
) -> SafetyDecision:
    """Approve only a fully screened, clean variant; anything missing or failed blocks it (fail closed)."""
    reasons: list[str] = []
    if service_error is not None:
        reasons.append(f"safety service failed: {service_error}")
    if severities is None:
        reasons.append("no category severities returned")
    else:
        for category in CATEGORIES:
            value = severities.get(category)
            if not _is_severity(value):
                reasons.append(f"{category} severity missing or invalid: {value!r}")
            elif value >= policy.block_severity:
                reasons.append(f"{category} severity {value} >= {policy.block_severity}")
    reasons += [f"blocklist {hit}" for hit in blocklist_hits]
    reasons += [f"rule {rule_id}" for rule_id in rule_hits]
    return SafetyDecision("blocked" if reasons else "approved", tuple(reasons))


class LocalScreen(NamedTuple):
    severities: dict[str, int]
    blocklist_hits: list[str]
    rule_hits: list[str]
    decision: SafetyDecision


def screen_locally(subject: str, body: str, policy: SafetyPolicy, **compliance_kwargs: object) -> LocalScreen:
    """Screen one variant with the embedded backend.

    Subject, body and both together are classified, keeping the highest severity per category:
    a phrase can be harmless in either part alone and harmful across them.
    `compliance_kwargs` are `find_compliance_hits`'s keyword arguments, all required.
    """
    combined = f"{subject}\n{body}"
    per_text = [classify_text(text) for text in (subject, body, combined)]
    severities = {category: max(scores[category] for scores in per_text) for category in CATEGORIES}
    blocklist_hits = find_blocklist_hits(combined, policy.blocklists)
    rule_hits = find_compliance_hits(subject, body, **compliance_kwargs)  # type: ignore[arg-type]
    return LocalScreen(severities, blocklist_hits, rule_hits, decide(severities, blocklist_hits, rule_hits, policy))
