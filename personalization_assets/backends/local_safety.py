"""The embedded safety backend: a lexicon classifier with Azure AI Content Safety's shape.

Four harm categories, each scored on the 0/2/4/6 severity scale (safe/low/medium/high), plus the
campaign's blocklists: what `text:analyze` returns. The Azure backend answers the same question
through the service; both feed the one screening path (`safety/screening.py`).

The classifier is a lexicon: per category, tables of phrases with a severity each. Single words
that marketing copy uses figuratively ("killer", "shoot", "sexy") score at most Low; Medium and
High need context (a target, an intent, a method). Benign idioms are matched first, and a harmful
match lying entirely inside one is ignored, so "to die for" stays safe while "I want you to die
for this" does not. A campaign has a few dozen variants, so plain regex loops are fine; the
patterns are compiled once, at import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from personalization_assets.backends import local_safety_model
from personalization_assets.safety.policy import CATEGORIES, HIGH, LOW, MEDIUM, SAFE
from personalization_assets.safety.rules import find_blocklist_hits
from personalization_assets.safety.screening import TextAnalysis
from personalization_assets.safety.text import compile_phrase, deobfuscate, normalize

BACKEND = "local-safety"

# Placeholders expanded inside the phrases below, so each table row reads like what it catches.
_PROTECTED_GROUPS = (
    "immigrants", "migrants", "refugees", "asylum seekers", "foreigners", "muslims", "jews",
    "jewish people", "christians", "catholics", "hindus", "sikhs", "buddhists", "atheists",
    "black people", "blacks", "white people", "whites", "asians", "asian people", "latinos",
    "hispanics", "mexicans", "arabs", "africans", "indians", "chinese people", "roma", "gypsies",
    "gay people", "gays", "lesbians", "homosexuals", "bisexuals", "trans people",
    "transgender people", "queer people", "women", "girls", "disabled people", "the disabled",
    "old people", "the elderly", "indigenous people", "natives", "pensioners", "autistic people", "autistic kids",
    "autistic children", "people in wheelchairs", "wheelchair users", "the poor", "poor people", "fat people",
    "poles", "polish (?:people|workers)", "romanians", "russians", "ukrainians", "irish", "italians", "nigerians", "somalis",
    "pakistanis", "turks", "syrians", "afghans", "trannies",
    # One member standing for the group: "every refugee is ...".
    "every (?:immigrant|refugee|migrant|muslim|jew|foreigner|woman|gay|trans person)",
)
_PLACEHOLDERS = {
    # A possessive ("women's jackets") names a product line, not the group.
    "{group}": r"(?:(?:all|the|these|those|most|their|such) )*(?:" + "|".join(_PROTECTED_GROUPS) + ")(?!')",
    "{dehumanising}": (
        r"(?:vermin|animals|beasts|parasites|rats|cockroaches|insects|pigs|apes|monkeys|savages"
        r"|subhuman|sub-human|less than human|not (?:even )?human|a disease|a plague|a cancer"
        r"|an infestation|a virus|filth|scum|trash|garbage)"
    ),
    "{inferior}": (
        r"(?:inferior|stupid|dirty|filthy|criminals|thieves|terrorists|rapists|lazy|useless|worthless|evil"
        r"|disgusting|degenerates?|primitive|barbaric|an abomination|a waste of space|a burden|a threat|the problem"
        r"|defective|freaks?|leeches|idiots|brainwashed(?: \w+)?|soulless(?: \w+)?|mentally ill(?: \w+)?|(?:greedy|lazy|dirty) \w+"
        r"|too (?:stupid|dumb|weak|slow) to \w+|(?:a )?criminals? waiting to happen|not (?:equal|as good) (?:to|as) \w+)"
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
            r"keep (?:the )?{group} out", r"{group} ?= ?(?:{dehumanising}|{inferior})",
            r"{group} (?:can't|cannot|shouldn't|should not) (?:\w+ ){0,2}?(?:climb|hike|lead|think|drive|read|work|be trusted)",
            r"(?:their|that) kind (?:never changes|always|are all|is all|ruins?)", r"(?:real|true|proper) americans,? not",
            r"(?:we|i) (?:don't|do not|won't|will not|refuse to) (?:serve|sell to|stock \w+ for|welcome) {group}",
            r"never trust (?:a |the )?{group}", r"(?:is|are|club|store|shop|trail|event) (?:for )?{group} only",
            r"{group} (?:are|is) (?:all )?born (?:thieves|criminals|liars|killers)", r"trann(?:y|ies)",
            r"{group} (?:are )?(?:taking over|replacing us|invading|infesting)",
            r"{group} (?:are|is) (?:ruining|destroying|poisoning) (?:this|our|the) (?:country|nation|city|town|neighbou?rhood)",
            r"{group} (?:should|must|need to) (?:all )?(?:leave|go home|go back|get out)",
            r"{group} belongs? (?:in the kitchen|at home|in (?:a|their) cages?)",
            r"{group} (?:control|run|own) (?:the|our) (?:\w+ )?(?:banks|media|government|world|economy|industry|industries)",
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
            r"purge after (?:every meal|eating|meals|you eat)", r"throw(?:ing)? up after (?:every |each )?(?:meal|meals|dinner|lunch|eating|you eat)",
            r"(?:take|swallow|down) (?:every|each|all the|the whole|a whole) (?:pill|pills|tablet|tablets|bottle|packet)",
            r"sleep forever", r"(?:step|jump) off (?:the|a) (?:edge|cliff|ledge|bridge|roof)",
            r"(?:hang|cut|burn|drown|poison) yourself", r"(?:end|take) your (?:own )?life",
            r"(?:you're|you are) (?:just )?a burden", r"favou?r and (?:die|kill yourself|end it)",
            r"(?:eat|eating) nothing (?:until|for)", r"(?:fast|fasting|starve|starving) (?:for a week|until|yourself)",
            r"hunger is (?:just )?weakness", r"nobody (?:needs|wants|loves) you",
            r"burn your (?:skin|arms?|legs?|wrists?)", r"cut (?:deeper|yourself deeper)", r"(?:show|send) (?:us|me) your (?:fresh )?(?:cuts|scars)",
            r"fresh cuts", r"(?:and )?never wake up", r"stop (?:eating|taking your (?:meds|medication|pills))",
            r"(?:jump|throw yourself) off (?:the|a) (?:summit|top|peak|edge|cliff|bridge|roof)",
            r"(?:just )?disappear\? (?:everyone|everybody|we)", r"let it all end", r"(?:drink|eat) until you (?:black out|pass out|die)",
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
            r"overdos(?:e|ed|ing)", r"life is (?:pointless|meaningless)", r"skip(?:ping)? meals",
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
            r"tits", r"titties", r"boobs", r"pussy", r"cocks?", r"dicks? pics?", r"vibrators?", r"dildos?", r"masturbat\w*",
            r"threesomes?", r"orgy", r"orgies", r"blow ?jobs?", r"deep ?throat\w*", r"cum", r"fuck\w*", r"sluts?",
            r"happy ending", r"spread your legs", r"escorts?", r"milfs?", r"(?:craving|want|wants) (?:young )?studs",
            r"(?:private|intimate) night", r"(?:moan|scream) (?:for|my name)", r"dirty[- ]talk\w*", r"get laid",
            r"(?:pay|paid|paying) for sex", r"sex (?:now|tonight|for|with)", r"(?:strip|lap) (?:show|dance)s?",
            r"(?:ride|bang|screw) (?:you|me|her|him) (?:until|all night|tonight|hard)", r"(?:from behind|doggy ?style)",
            r"(?:anonymous|casual|no strings) sex", r"hook ?up (?:for|app)",
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
            r"open fire on", r"(?:will|'ll|to) be shot on sight", r"(?:i'm|i am|we're|we are) coming for you",
            r"(?:skull|skulls|head) (?:cracked|split|smashed) open", r"brains? (?:spilled|splattered|everywhere)",
            r"teach (?:\w+ ){1,3}a lesson with (?:a|an|my|our) (?:baseball )?(?:bat|knife|gun|axe|hammer|crowbar|fists?)",
            r"(?:no one|nobody) (?:will|would) (?:ever )?find (?:the|your) body", r"pipe ?bombs?",
            r"beat (?:\w+ ){1,3}until (?:he|she|they|it) (?:stops? moving|can't move|is dead)",
            r"tortur(?:e|ing) (?:the|that|this) \w+", r"take (?:your |an |the |my )?(?:new )?(?:axe|knife|hammer|bat|machete) to (?:\w+ ){0,2}(?:head|face|skull)",
            r"watch your back", r"(?:zip ties|duct tape)[^.!?]{0,40}(?:crossbow|gun|rifle|knife|machete)", r"(?:throat|throats) (?:cut|slit)",
            r"(?:set|light) (?:\w+ ){1,3}on fire with (?:\w+ ){1,3}inside", r"burn (?:\w+ ){1,3}down with (?:\w+ ){1,3}inside",
            r"(?:won't|will not|never) make it home", r"(?:kill|murder|stab|shoot|slaughter|gas|behead|hang|drown) (?:every|each) (?:last |single )?one",
            r"(?:kill|murder|slaughter|butcher) (?:them|you) all", r"(?:deserves?|earned) a bullet",
            r"(?:kick|stomp|punch|hit) (?:her|him|them|you) in the (?:head|face|teeth)",
            r"(?:stab|strangle|shoot|drown|slaughter|lynch|behead|butcher|murder) (?:the|that|this|every|each|those|all the) \w+",
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
            r"shame if something (?:bad )?(?:happened|were to happen) to (?:you|your|them|him|her)",
        ),
        LOW: (  # violent words that marketing also uses figuratively
            r"kill(?:s|ed|ing|er|ers)?", r"shoot(?:s|ing)?", r"die,", r"d!e", r"shot", r"guns?", r"weapons?", r"bombs?",
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



@dataclass(frozen=True)
class _LexiconEntry:
    category: str
    severity: int
    pattern: re.Pattern[str]


# Highest severity first, so a category stops being searched once nothing higher can match.
_LEXICON_ENTRIES = tuple(
    sorted(
        (
            _LexiconEntry(category, severity, compile_phrase(phrase, _PLACEHOLDERS))
            for category, tiers in _LEXICON.items()
            for severity, phrases in tiers.items()
            for phrase in phrases
        ),
        key=lambda entry: -entry.severity,
    )
)
_BENIGN_IDIOM_PATTERNS = tuple(compile_phrase(phrase, _PLACEHOLDERS) for phrase in _BENIGN_IDIOMS)


def _without_benign_idioms(text: str) -> str:
    """The text the trained classifier reads: the benign idioms taken out, so "cut yourself some
    slack" is not read as its words, as the lexicon does not read it."""
    text = normalize(text)
    for pattern in _BENIGN_IDIOM_PATTERNS:
        text = pattern.sub(" ", text)
    return text


def _lexicon_severities(text: str) -> dict[str, int]:
    """Severities per category from the lexicon, on one version of a text."""
    benign_spans = [m.span() for pattern in _BENIGN_IDIOM_PATTERNS for m in pattern.finditer(text)]

    def outside_idioms(match: re.Match[str]) -> bool:
        start, end = match.span()
        return not any(idiom_start <= start and end <= idiom_end for idiom_start, idiom_end in benign_spans)

    severities = dict.fromkeys(CATEGORIES, SAFE)
    for entry in _LEXICON_ENTRIES:
        if entry.severity > severities[entry.category] and any(
            outside_idioms(match) for match in entry.pattern.finditer(text)
        ):
            severities[entry.category] = entry.severity
    return severities


def _combined_severities(text: str, model: Mapping[str, int]) -> dict[str, int]:
    """The highest of the lexicon on the text as written (normalized), the lexicon on its
    deobfuscated reading, and the trained classifier's severities `model` for the text."""
    readings = (normalize(text), deobfuscate(text))
    lexicon = [_lexicon_severities(reading) for reading in dict.fromkeys(readings)]
    return {category: max([*(found[category] for found in lexicon), model.get(category, SAFE)]) for category in CATEGORIES}


def classify_text(text: str) -> dict[str, int]:
    """Azure-shaped severities (0/2/4/6) per category for one text: lexicon and trained
    classifier (`local_safety_model`, Medium at most) together."""
    return _combined_severities(text, local_safety_model.severities([_without_benign_idioms(text)])[0])


def analyze(texts: Sequence[str], blocklists: Mapping[str, Sequence[str]]) -> list[TextAnalysis]:
    """What the embedded backend says about each text: severities and blocklist matches. The
    classifier reads the whole batch in one call."""
    model = local_safety_model.severities([_without_benign_idioms(text) for text in texts])
    return [TextAnalysis(_combined_severities(text, found), tuple(find_blocklist_hits(text, blocklists)))
            for text, found in zip(texts, model, strict=True)]
