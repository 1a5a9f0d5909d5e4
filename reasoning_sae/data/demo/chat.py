"""Demo chat rows in the LMSYS-Chat-1M schema: topic tables, email drafts, multi-turn conversations and
`chat_rows`."""
from __future__ import annotations

import random

from reasoning_sae.data.demo._common import _NAMES, SOURCE, _cap


# Each topic: (user prompts with {x}, fillers, intros, points, closers). A tuple filler is (x, *specific points);
# its specific points come before the sampled generic ones.
_TOPICS = (
    (("How do I make a really good {x}?", "Any tips for cooking {x} at home?", "What's the secret to great {x}?"),
     ("lasagna", "banana bread", "chicken curry", "mushroom risotto", "pancakes", "vegetable soup", "homemade pizza",
      "beef stew", "pad thai", "chocolate chip cookies", "falafel", "fried rice"),
     ("Great choice! {X} is very doable at home with a little preparation.", "Good {x} comes down to a few habits:"),
     ("Read the whole recipe first and measure out your ingredients before you turn on the heat.",
      "Season in stages and taste as you go instead of adding all the salt at once.",
      "Spend your budget on the ingredients that matter most, such as fresh herbs, good cheese or whole spices.",
      "Don't crowd the pan; food browns much better with a little space around it.",
      "Let the dish rest for a few minutes after cooking so the flavors settle.",
      "Keep the heat moderate, since most home cooks cook too hot.", "A sharp knife makes prep faster and safer.",
      "Recipes are a useful guide, but trust your senses when judging doneness.",
      "Write down what you changed each time so you can repeat your best version."),
     ("Enjoy your cooking!", "Have fun with it, and adjust everything to your own taste.")),
    (("I'm visiting {x} next month. What should I know?", "Can you help me plan a trip to {x}?",
      "What are some travel tips for {x}?"),
     ("Lisbon", "Kyoto", "Mexico City", "Edinburgh", "Istanbul", "Vancouver", "Cape Town", "Prague", "Seoul",
      "Buenos Aires", "Marrakech", "Copenhagen"),
     ("{X} is a wonderful destination! Here are some practical suggestions.",
      "Sounds like a great trip. A few things will help you enjoy {x}:"),
     ("Book accommodation close to public transport so you can get around easily.",
      "Try the local markets and small family-run restaurants.",
      "Check the opening days of major museums, since many close one day a week.",
      "Carry a reusable water bottle and comfortable walking shoes.",
      "Learn a few basic phrases in the local language; people usually appreciate the effort.",
      "Buy a transit card on your first day, which is often cheaper than single tickets.",
      "Leave one afternoon unplanned to wander through neighborhoods away from the main sights.",
      "Popular sights get crowded at midday, however, so visit them early in the morning.",
      "Keep digital and paper copies of your passport and bookings."),
     ("Have a fantastic trip!", "Enjoy exploring, and safe travels!")),
    (("Can you give me some tips on {x}?", "What helps with {x}?", "I'm struggling with {x}. Any advice?"),
     ("sleep", "hydration", "stress", "posture at work", "eating more vegetables", "staying active at home",
      "cutting down on sugar", "screen time"),
     ("Small, consistent changes make the biggest difference with {x}.",
      "Here are some simple, evidence-based ideas for {x}:"),
     ("Keep a regular schedule, even on weekends.", "Take short movement breaks every hour or so.",
      "Limit caffeine in the afternoon and evening.", "Keep healthy options visible and easy to reach.",
      "Track your progress for two weeks so you can see what actually helps.",
      "Spend some time outdoors in daylight each day.",
      "Pair a new habit with something you already do, like brushing your teeth.",
      "Start small; maybe one change per week is enough at first.",
      "If problems persist, it's worth talking to a doctor or another qualified professional."),
     ("I hope this helps!", "Take it one step at a time, and be patient with yourself.")),
    (("How can I be more productive when {x}?", "What's a good system for {x}?", "Any advice for {x}?"),
     ("studying for exams", "working on a long project", "learning a new language", "writing a thesis",
      "juggling several deadlines", "preparing a presentation"),
     ("Good question. A simple structure goes a long way when {x}.",
      "Here's an approach many people find useful for {x}:"),
     ("Break large goals into tasks that take less than an hour.",
      "Plan tomorrow's top three priorities at the end of each day.",
      "Work in focused blocks of 25 to 50 minutes, followed by a short break.",
      "Turn off notifications during focused work.", "Review your progress once a week and adjust the plan.",
      "Use spaced repetition for anything you need to memorize.",
      "Start with the hardest task while your energy is highest.",
      "Tools can help, but a plain paper list works surprisingly well.",
      "Keep one list of tasks rather than notes scattered everywhere."),
     ("Good luck, you've got this!", "Let me know if you'd like help building a weekly plan.")),
    (("How do I take care of {x}?", "I just got {x}. What do I need to know?", "How should I look after {x}?"),
     ("a snake plant", "tomato seedlings", "a new puppy", "a goldfish", "a rescue cat", "a small herb garden",
      "a sourdough starter", "an orchid"),
     ("Congratulations! Caring for {x} is easier once you have a routine.", "Here are the basics for {x}:"),
     ("Stick to a consistent daily routine.", "Too much water or food causes more problems than too little.",
      "Keep a simple care log so you can spot patterns.", "Make sure there's enough light and fresh air.",
      "Learn the early warning signs that something is off.",
      "Ask a local expert, such as a vet or a garden center, when you're unsure.",
      "Be patient during the first few weeks while everything settles in.",
      "Keep supplies in one place so the routine stays easy.",
      "Every case is a little different, so adjust based on what you observe."),
     ("Enjoy your new companion!", "Have fun, and don't worry if the first weeks feel like trial and error.")),
    (("What is {x}?", "Can you explain {x} in simple terms?", "I keep hearing about {x}. What does it mean?"),
     (("photosynthesis", "Photosynthesis is how plants turn light, water and carbon dioxide into sugar and oxygen.",
       "It takes place mainly in the chloroplasts of leaf cells."),
      ("inflation", "Inflation is the general rise in prices over time, so each unit of money buys a little less.",
       "Central banks usually aim to keep it low and stable, often around two percent a year."),
      ("machine learning", "Machine learning is a way of building software that learns patterns from examples "
       "instead of following hand-written rules.", "A spam filter that improves as it sees more emails is a "
       "classic example."),
      ("compound interest", "Compound interest means you earn interest on your interest as well as on the original "
       "amount.", "Over many years this makes savings grow much faster than simple interest would."),
      ("the greenhouse effect", "The greenhouse effect is the warming of a planet because gases in its atmosphere "
       "trap outgoing heat.", "Carbon dioxide, methane and water vapor are the main greenhouse gases on Earth."),
      ("a black hole", "A black hole is a region of space where gravity is so strong that not even light can "
       "escape.", "Most form when very massive stars collapse at the end of their lives.")),
     ("Sure! Here's a clear explanation.", "Happy to explain."),
     ("It's a concept you'll see in textbooks, news articles and everyday conversation.",
      "A helpful way to remember it is to connect it to a simple everyday example.",
      "Researchers have studied it in detail for many decades.",
      "Short introductory videos or articles can give you a deeper picture.",
      "Many common misunderstandings come from mixing it up with related ideas.",
      "The basic idea is simple, but the details can get technical quickly."),
     ("Let me know if you'd like more detail on any part.", "I hope that makes it clearer!")),
    (("Can you tell me about {x}?", "Give me a quick summary of {x}.", "What should I know about {x}?"),
     (("the fall of the Berlin Wall", "The Berlin Wall fell on 9 November 1989, when East German authorities "
       "opened the border crossings.", "Germany was formally reunified in October 1990."),
      ("the first Moon landing", "Apollo 11 landed on the Moon on 20 July 1969.", "Neil Armstrong and Buzz "
       "Aldrin walked on the surface while Michael Collins orbited above in the command module."),
      ("the printing press", "Johannes Gutenberg developed a movable-type printing press in Mainz around 1450.",
       "It made books far cheaper and helped spread literacy and new ideas across Europe."),
      ("the Panama Canal", "The Panama Canal opened in 1914 after about a decade of construction.",
       "It connects the Atlantic and Pacific Oceans and saves ships a long voyage around South America.")),
     ("Certainly! Here's a short overview.", "Sure, here are the key facts."),
     ("Historians still debate some of the causes and long-term effects.",
      "Museums and archives hold many original documents from the period.",
      "It is often taught as a turning point in modern history.",
      "Its influence can still be seen in politics, technology and culture today.",
      "Personal accounts from people who lived through it add a lot of color to the story."),
     ("Let me know if you'd like book recommendations on the topic.", "I hope this summary is useful!")),
    (("Can you recommend some good {x}?", "I'm looking for {x}. Any suggestions?", "What are the best {x}?"),
     (("science fiction novels", "\"Dune\" by Frank Herbert is an epic about politics and ecology on a desert "
       "planet.", "\"The Left Hand of Darkness\" by Ursula K. Le Guin explores culture and gender on an icy world."),
      ("mystery novels", "\"The Hound of the Baskervilles\" by Arthur Conan Doyle is a great entry point to "
       "Sherlock Holmes.", "\"And Then There Were None\" by Agatha Christie is one of the best-selling mysteries."),
      ("board games for families", "\"Ticket to Ride\" is easy to learn and works well for ages eight and up.",
       "\"Carcassonne\" is a tile-laying game with short turns and lots of replay value."),
      ("podcasts about history", "\"Hardcore History\" offers long, dramatic deep dives into major events.",
       "\"The Rest Is History\" is conversational and covers a huge range of topics.")),
     ("Here are a few favorites you might enjoy.", "Great question! A few suggestions:"),
     ("Reading reviews from people with similar tastes is a good way to find more.",
      "Your local library often has these available for free.",
      "Try one and see whether the style suits you before committing to a series.",
      "Online communities often share curated lists for newcomers.",
      "Tastes vary a lot, so don't be afraid to drop something that isn't working for you."),
     ("Enjoy!", "Let me know which ones you liked and I can suggest more.")),
    (("What does this Python code do: `{x}`?", "Can you explain `{x}` to me?", "How does `{x}` work?"),
     (("[x * x for x in nums]", "This list comprehension builds a new list with the square of every element of "
       "`nums`.", "It's equivalent to a for loop that appends `x * x` to an empty list."),
      ("with open('data.txt') as f:", "This opens `data.txt` inside a context manager.",
       "The `with` block guarantees the file is closed when the block ends, even if an error occurs."),
      ("d.get(key, 0)", "This looks up `key` in the dictionary `d` and returns 0 if the key is missing instead of "
       "raising a KeyError.", "It's handy for counting, for example `d[key] = d.get(key, 0) + 1`."),
      ("sorted(words, key=len)", "This returns a new list of the words ordered by length, shortest first.",
       "The original list is left unchanged, unlike `words.sort(key=len)`.")),
     ("Sure! Let's break it down.", "Good question, this is a common Python idiom."),
     ("You can try it in an interactive Python session to see the result directly.",
      "The official Python documentation has more examples.",
      "Idioms like this make code shorter and easier to read once you're used to them.",
      "Printing intermediate values is a simple way to see what's happening.",
      "It works the same way in any recent version of Python 3."),
     ("Happy coding!", "Feel free to share more code if anything else is unclear.")),
)
_EMAILS = (("ask my manager for a day off next Friday", "Request for a day off",
            "I'd like to request a day off next Friday for a personal matter."),
           ("follow up after a job interview", "Thank you for the interview",
            "Thank you for taking the time to meet with me yesterday. I enjoyed learning more about the role."),
           ("remind a client about an unpaid invoice", "Friendly reminder about invoice payment",
            "I wanted to follow up on the invoice we sent last month, which is now past its due date."),
           ("invite my team to a planning meeting", "Planning meeting next week",
            "I'd like to invite everyone to a short planning meeting next Tuesday at 10 a.m."),
           ("decline a meeting politely", "Unable to attend Thursday's meeting",
            "Thank you for the invitation to Thursday's meeting. Unfortunately, I have a conflict at that time."))
_FOLLOW = ("Thanks! Could you give me a couple more tips?", "That's helpful. What else should I keep in mind?",
           "Great, thank you. Anything else worth knowing?", "Can you add a few more points?")
_SUM_Q = ("Could you sum that up briefly?", "What are the most important points if I only remember a few?")
_SUM_A = ("Sure! The key points are:", "Absolutely. If you only remember a few things, make it these:")
_MORE = ("Of course! Here are a few more ideas:", "Sure, a few more things worth keeping in mind:",
         "Happy to help. Here are some additional points:")


def _enough(pool: list[str], k: int, words: int = 40) -> int:
    while k < len(pool) and len(" ".join(pool[:k]).split()) < words:
        k += 1
    return k


def _points(body: list[str], r: random.Random) -> str:
    return "\n".join(f"{i}. {s}" for i, s in enumerate(body, 1)) if r.random() < .5 else " ".join(body)


def _email(r: random.Random) -> list[dict]:
    goal, subject, opener = r.choice(_EMAILS)
    to, me = r.choice(("Sarah", "Mr. Patel", "Team", "Daniel", "Ms. Okafor")), r.choice(_NAMES)
    extra = r.choice(("I have made sure my current tasks are covered.", "I am happy to discuss the details.",
                      "Please let me know if you need anything further from me."))
    body = (f"Here's a draft you can adapt:\n\nSubject: {subject}\n\nHi {to},\n\nI hope you're doing well. {opener} "
            f"{extra} Thank you for your time and understanding.\n\nBest regards,\n{me}\n\nFeel free to adjust the "
            "tone to match your relationship with the recipient.")
    return [{"role": "user", "content": f"Can you help me write an email to {goal}?"},
            {"role": "assistant", "content": body}]


def _conversation(r: random.Random, turns: int) -> list[dict]:
    prompts, fillers, intros, pts, closers = r.choice(_TOPICS)
    fill = r.choice(fillers)
    x, specific = (fill[0], list(fill[1:])) if isinstance(fill, tuple) else (fill, [])
    pool = r.sample(pts, len(pts))
    k = _enough(pool, r.randint(3, 5), 40 - len(" ".join(specific).split()))
    intro = r.choice(intros).format(x=x, X=_cap(x))
    said = specific + pool[:k]
    conv = [{"role": "user", "content": r.choice(prompts).format(x=x)},
            {"role": "assistant", "content": f"{intro}\n\n{_points(said, r)}\n\n{r.choice(closers)}"}]
    for _ in range(turns - 1):
        pool = pool[k:]
        k = _enough(pool, 3, 36)
        if len(pool) >= 3 and len(" ".join(pool[:k]).split()) >= 28:
            ask, lead, body = r.choice(_FOLLOW), r.choice(_MORE), pool[:k]
        elif conv[-2]["content"] in _SUM_Q:
            break
        else:
            ask, lead, body, k = r.choice(_SUM_Q), r.choice(_SUM_A), said[:_enough(said, 3, 36)], 0
        conv += [{"role": "user", "content": ask},
                 {"role": "assistant", "content": f"{lead}\n\n{_points(body, r)}\n\n{r.choice(closers)}"}]
    return conv


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows in the LMSYS-Chat-1M schema: keys conversation_id, model ("reasoning_sae.demo"), conversation
    (list of {"role": "user"|"assistant", "content": str}, 1-3 turns), turn, language ("English")."""
    rows = []
    for i in range(n):
        r = random.Random(f"{seed}:chat:{i}")
        cid, turns = f"{r.getrandbits(128):032x}", r.choice((1, 1, 1, 1, 2, 2, 3))
        conv = _email(r) if r.random() < .1 else _conversation(r, turns)
        rows.append({"conversation_id": cid, "model": SOURCE, "conversation": conv, "turn": len(conv) // 2,
                     "language": "English"})
    return rows
