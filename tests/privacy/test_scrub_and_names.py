"""Person-name detector and identifier scrubber (issue 11: attack 3, the UK phone of attack 11)."""

from __future__ import annotations

import pytest

from convoscope.keywords import build_keyword_index
from convoscope.person_names import find_person_names, is_person_name_term
from convoscope.scrub import scrub

# Title-case cluster names of the kind the pipeline writes: none names a person.
GENERIC_CLUSTER_NAMES = [
    "Python Programming Help", "Write Marketing Emails", "Travel Planning In Europe", "Machine Learning Model Debugging",
    "Tax Deductions For Home Offices", "Recipes With Chicken And Rice", "JavaScript Async Errors", "Resume Writing Tips",
    "Cover Letter Drafting", "Excel Formula Troubleshooting", "SQL Query Optimization", "React Component State",
    "Docker Container Networking", "Kubernetes Deployment Issues", "Java Spring Boot Configuration",
    "Weight Loss Meal Plans", "Home Workout Routines", "Dog Training Advice", "Cat Health Questions",
    "Gardening Tips For Beginners", "Houseplant Care", "Budget Travel To Paris", "Learning Spanish Vocabulary",
    "French Grammar Questions", "German Language Practice", "Christmas Gift Ideas", "Birthday Party Planning",
    "Wedding Speech Writing", "Job Interview Preparation", "Salary Negotiation Advice", "Small Business Marketing",
    "Social Media Strategy", "Email Newsletter Design", "Customer Support Replies", "Product Description Writing",
    "Poetry And Creative Writing", "Short Story Ideas", "Fantasy Worldbuilding", "Song Lyrics Requests",
    "Math Homework Help", "Calculus Problem Solving", "Statistics Concepts Explained", "Physics Homework Questions",
    "Chemistry Reaction Balancing", "Biology Study Notes", "History Essay Outlines", "Philosophy Discussion",
    "Mental Health Support", "Sleep Improvement Tips", "Anxiety Coping Strategies", "Relationship Advice",
    "Parenting Toddler Tantrums", "Car Maintenance Questions", "Home Repair Projects", "Plumbing Leak Fixes",
    "Personal Finance Budgeting", "Stock Market Investing", "Cryptocurrency Questions", "Mortgage Refinancing",
    "Credit Card Debt Management", "Insurance Claim Questions", "Legal Questions About Leases",
    "Immigration Visa Applications", "Amazon Seller Account Issues", "Google Sheets Automation",
    "Microsoft Word Formatting", "Windows Update Errors", "Linux Shell Scripting", "Git Merge Conflicts",
    "Android App Development", "iPhone Battery Problems", "Video Game Recommendations", "Movie Recommendations",
    "Book Summaries", "Music Theory Questions", "Guitar Chord Progressions", "Photography Tips", "Drawing Techniques",
    "Knitting Patterns", "Baking Bread At Home", "Vegan Recipes", "Coffee Brewing Methods", "Wine Pairing Suggestions",
    "Monday Motivation Quotes", "January Fitness Goals", "Trip To Florence And Venice", "Moving To Austin Texas",
    "Hotels In Victoria", "Visiting Jordan And Petra", "Georgia Election Questions", "Jasmine Rice Cooking Tips",
    "Rose Garden Care", "Grace Period On Loans", "Will And Testament Drafting", "Bill Payment Reminders",
    "King Size Bed Shopping", "Green Energy Policy", "Summer Camp Activities", "Easter Egg Decorating",
    "Data Visualization With Pandas", "Ruby On Rails Errors", "Swift UI Layout", "Julia Language Performance",
    "Apple Watch Setup", "Tesla Model Charging", "Chrome Extension Development", "Unity Game Physics",
]

GENERIC_DESCRIPTIONS = [
    "Users ask for help debugging Python scripts and fixing import errors.",
    "Requests to plan trips to Paris, Rome and London on a budget.",
    "People ask how to use VLOOKUP and pivot tables in Microsoft Excel.",
    "Questions about celebrating Christmas and Easter with children.",
    "Users want recipes with chicken, rice and vegetables for weeknight dinners.",
    "Requests for help with Google Cloud and Amazon Web Services billing.",
    "Conversations about tax deductions for home offices in the United States.",
    "Users ask the assistant to rewrite cover letters for jobs in New York.",
    "Discussions of the Java Virtual Machine and garbage collection.",
    "Questions about moving to Austin, Texas or Denver, Colorado.",
]

# Planted person names in several languages: (text, a name that must be found inside some hit).
PLANTED = [
    ("Complaints about landlord Zebulon Quargmire at 42 Wobbleton Lane", "Zebulon Quargmire"),
    ("Help for Dr. Smith", "Smith"),
    ("Maria's insulin schedule", "Maria"),
    ("My name is John Carter and I need help with my taxes", "John Carter"),
    ("Questions about what Jennifer Lawson said at the meeting", "Jennifer Lawson"),
    ("Email to Mr Thompson about the invoice", "Thompson"),
    ("Letter to Mrs. Patel regarding the school trip", "Patel"),
    ("Ask Ms Okafor for the report", "Okafor"),
    ("Dispute with my neighbour Gideon Fairweather over the fence", "Gideon Fairweather"),
    ("My boss Kevin Doyle keeps changing deadlines", "Kevin Doyle"),
    ("Insulin Schedule For Maria Lopez", "Maria Lopez"),
    ("Complaints About Landlord Robert Quargmire", "Robert Quargmire"),
    ("Emily Watson Custody Case", "Emily Watson"),
    ("Ludwig van Beethoven biography", "Ludwig van Beethoven"),
    ("Mi casero Javier Martínez no devuelve la fianza", "Javier Martínez"),
    ("Me llamo Ana Ruiz y necesito ayuda", "Ana Ruiz"),
    ("Carta para la Sra. Fernández sobre el alquiler", "Fernández"),
    ("El Sr. Gómez no contesta", "Gómez"),
    ("Problemas con mi jefa Lucía Herrera", "Lucía Herrera"),
    ("Mein Vermieter Klaus Bergmann antwortet nicht", "Klaus Bergmann"),
    ("Brief an Frau Schneider wegen der Kaution", "Schneider"),
    ("Termin bei Herr Müller verschieben", "Müller"),
    ("Ich heiße Jürgen Weiß und habe eine Frage", "Jürgen Weiß"),
    ("M. Dupont est mon voisin", "Dupont"),
    ("Lettre à Mme Lefèvre pour le loyer", "Lefèvre"),
    ("Je m'appelle Élodie Marchand", "Élodie Marchand"),
    ("Mon propriétaire François Girard refuse de réparer", "François Girard"),
    ("Mi chiamo Giuseppe Bianchi", "Giuseppe Bianchi"),
    ("Il mio vicino Alessandro Ferrari fa rumore", "Alessandro"),
    ("Lettera per Francesca Romano sul contratto", "Francesca Romano"),
    ("Meu nome é João Pereira", "João Pereira"),
    ("O senhorio Rodrigo Almeida não responde", "Rodrigo Almeida"),
    ("Consulta com a Dra. Beatriz Carvalho", "Beatriz Carvalho"),
    ("Mijn buurman Jan de Vries maakt lawaai", "Jan de Vries"),
    ("Ik heet Sanne Bakker", "Sanne Bakker"),
    ("Brief aan Dhr. Janssen over de huur", "Janssen"),
    ("Nazywam się Katarzyna Kowalska", "Katarzyna Kowalska"),
    ("Mój sąsiad Tomasz Wiśniewski jest głośny", "Tomasz Wiśniewski"),
    ("Pani Nowak nie odpowiada na maile", "Nowak"),
    ("Benim adım Mehmet Yılmaz", "Mehmet Yılmaz"),
    ("Ev sahibim Ayşe Demir depozitoyu vermiyor", "Ayşe Demir"),
    ("Ahmet Kaya ile toplantı notları", "Ahmet Kaya"),
    ("Birthday message for Olivia Bennett", "Olivia Bennett"),
    ("Users ask about Jordan Peterson lectures", "Jordan Peterson"),
    ("Notes from the meeting with Priya Sharma", "Priya Sharma"),
    ("Thank-you note to Sophie Dubois", "Sophie Dubois"),
    ("Reference letter for Lukas Schmidt", "Lukas Schmidt"),
    ("Schedule a call with Hiroshi Tanaka", "Hiroshi Tanaka"),
    ("Advice on my husband Thaddeus Plimpleworth", "Thaddeus Plimpleworth"),
    ("Chloe's college application essay", "Chloe"),
    ("Advice for Grace's wedding toast", "Grace"),  # a weak name ("grace" is a word) counts mid-sentence
    ("Message to my teacher Miriam Oyelaran", "Miriam Oyelaran"),
    ("Η Μαρία Παπαδοπούλου ζητά βοήθεια", "Μαρία Παπαδοπούλου"),
]


@pytest.mark.parametrize("name", GENERIC_CLUSTER_NAMES + GENERIC_DESCRIPTIONS)
def test_generic_names_and_descriptions_have_no_person_name(name):
    assert find_person_names(name) == []


@pytest.mark.parametrize("text,name", PLANTED)
def test_planted_person_names_are_found(text, name):
    hits = find_person_names(text)
    assert any(name in hit for hit in hits), hits


def test_hits_are_spans_of_the_text():
    text = "Complaints about landlord Zebulon Quargmire at 42 Wobbleton Lane"
    assert find_person_names(text) == ["Zebulon Quargmire"]
    assert find_person_names("Help for Dr. Smith") == ["Dr. Smith"]


@pytest.mark.parametrize("term,share,expected", [
    ("maria", 0.95, True),
    ("maria", 0.3, False),  # written lowercase most of the time: not used as a name here
    ("smith", 0.8, True),
    ("rice", 0.1, False),  # a surname, but a food here
    ("will", 0.05, False),
    ("paris", 1.0, False),  # a place, however capitalised
    ("jordan", 1.0, False),
    ("january", 1.0, False),
    ("python", 1.0, False),  # tech words are in no name list: never excluded
    ("excel", 1.0, False),
    ("kubernetes", 1.0, False),
    ("quargmire", 1.0, False),  # unknown words are left to the k-anonymity threshold
    ("maria lopez", 0.9, True),
    ("zebulon quargmire", 0.9, True),  # a given name first
    ("machine learning", 0.9, False),
    ("new york", 1.0, False),
    ("insulin schedule", 0.0, False),
])
def test_is_person_name_term(term, share, expected):
    assert is_person_name_term(term, share) is expected


def _campaign_texts():
    """Attack 3: 7 accounts x 3 conversations about one private person, plus ordinary requests."""
    texts, accounts = [], []
    for a in range(7):
        for _ in range(3):
            texts.append("My landlord Zebulon Quargmire refuses to fix the heating. Zebulon Quargmire ignores me")
            accounts.append(f"campaign-{a}")
    for a in range(10):
        texts.append("I cooked rice with chicken. Rice is tasty, says John Smith")
        accounts.append(f"cook-{a}")
    return texts, accounts


def test_keyword_index_leaves_out_person_names():
    texts, accounts = _campaign_texts()
    index = build_keyword_index(texts, accounts, 5)
    terms = set(index.terms)
    assert not {t for t in terms if {"zebulon", "quargmire", "john", "smith"} & set(t.split())}
    assert {"landlord", "heating", "rice", "chicken"} <= terms  # "rice" is a surname, but written lowercase
    assert index.person_name_terms_excluded > 0
    assert index.allowed_terms == len(index.terms)


def test_keyword_index_keeps_names_of_public_figures():
    texts, accounts = _campaign_texts()
    index = build_keyword_index(texts, accounts, 5, public_figure_accounts=7)
    assert {"zebulon quargmire", "zebulon", "quargmire"} <= set(index.terms)
    assert "john smith" in set(index.terms)  # used by 10 accounts


PHONES = ["07700 900123", "07700900123", "+44 7700 900123", "+44 (0)20 7946 0958", "06 12 34 56 78", "+33 6 12 34 56 78",
          "030 12345678", "+49 30 1234 5678", "0151 23456789", "(415) 555-0199", "415.555.0199", "415-555-0199",
          "+91 98765 43210", "612 34 56 78", "06-12345678", "(11) 91234-5678", "090-1234-5678", "0412 345 678",
          "+1 415 555 0199", "0044 20 7946 0958"]


@pytest.mark.parametrize("phone", PHONES)
def test_phones_of_many_countries_are_masked(phone):
    assert scrub(f"Please call me on {phone} tomorrow.") == "Please call me on [PHONE] tomorrow."


@pytest.mark.parametrize("text,expected", [
    ("My landlord lives at 42 Wobbleton Lane, sadly.", "My landlord lives at [ADDRESS], sadly."),
    ("Vivo en Calle Mayor 12 desde enero", "Vivo en [ADDRESS] desde enero"),
    ("Ich wohne in der Hauptstraße 5 in Köln", "Ich wohne in der [ADDRESS] in Köln"),
    ("J'habite au 12 rue de la Paix à Paris", "J'habite au [ADDRESS] à Paris"),
    ("Send it to SW1A 1AA please", "Send it to [POSTCODE] please"),
    ("IBAN DE89 3704 0044 0532 0130 00 for the rent", "IBAN [IBAN] for the rent"),
    ("my passport number is X1234567", "my passport number is [ID]"),
    ("DNI: 12345678Z", "DNI: [ID]"),
    ("mail jane.doe@example.com", "mail [EMAIL]"),
    ("card 4111 1111 1111 1111", "card [CARD]"),
    ("+44 7700 900123 2024", "[PHONE] 2024"),  # a number run on past a phone keeps its tail
])
def test_identifiers_are_masked(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize("text", [
    "What happened in 2024 and 1999?", "It costs $1,299.99 or €1.299,99.", "Upgrade to Python 3.11.7 and numpy 1.26.4",
    "The meeting is at 10:30 or 14:45:00.", "Due on 2024-05-01 or 01/05/2024 or 05.01.2024.", "Add 500 grams of flour and 250 ml milk.",
    "for i in range(0, 100): x[i] = 0.001 * i", "version 0.10.2 of the library", "Population 8 000 000 in 2023",
    "Order #123456 shipped", "Room 101 on floor 3", "GB82 WEST 1234", "a 1080p 60 fps video, 4 GB RAM, RTX 3080",
    "Score was 3-1 after 90 minutes", "coordinates 48.8566, 2.3522", "He walked 5 miles down the road",
    "I live on a quiet street", "Read chapter 12 of the rue book",
])
def test_ordinary_numbers_and_text_are_kept(text):
    assert scrub(text) == text
