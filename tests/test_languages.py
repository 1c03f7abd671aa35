"""The language facet: fastText's bundled identifier, with Unknown for too little natural language."""

from __future__ import annotations

from convoscope.languages import detect_language, detect_languages


def test_common_languages_are_named_in_english():
    texts = {
        "Can you help me write a polite email to my landlord about the broken heating?": "English",
        "¿Me puedes ayudar a escribir una carta a mi casero sobre la calefacción rota?": "Spanish",
        "Напиши, пожалуйста, письмо арендодателю о сломанном отоплении.": "Russian",
        "下記のコードの可読性を上げてください。変数名も分かりやすくしてください。": "Japanese",
        "Peux-tu m'aider à écrire une lettre à mon propriétaire au sujet du chauffage ?": "French",
    }
    assert detect_languages(list(texts)) == list(texts.values())


def test_too_little_text_or_only_code_is_unknown():
    assert detect_language("hi") == "Unknown"
    assert detect_language("") == "Unknown"
    assert detect_language("x = 1; y = 2 // 3 {} [] 42 7.5 == != <= >=") == "Unknown"


def test_code_does_not_hide_the_language_of_the_question():
    text = "How do I fix this error in my loop?\n\nfor i in range(10):\n    print(i / 0)\n"
    assert detect_language(text) == "English"
