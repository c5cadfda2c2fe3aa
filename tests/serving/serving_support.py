"""Shared constants of the model-serving tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_NLU = """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
    - hi there
    - good morning
    - hey, how are you
    - hi bot
    - greetings
- intent: goodbye
  examples: |
    - bye
    - see you later
    - goodbye for now
    - talk to you soon
    - farewell
    - have a nice day, bye
- intent: order_status
  examples: |
    - where is my order [ORD-12345](order_id)
    - track my package
    - has my order shipped yet
    - when will my delivery arrive
    - order status please
    - my parcel has not arrived
- intent: book_flight
  examples: |
    - book a flight to [Paris](destination)
    - I want to fly to [Berlin]{"entity": "destination"} tomorrow
    - get me a plane ticket
    - I need a flight for [2](passengers) people
    - reserve a seat on a flight to [Rome](destination)
    - find flights to [Tokyo](destination)
- intent: ask_price
  examples: |
    - how much is the [laptop](product)
    - what does the [phone](product) cost
    - price of the [tablet](product)
    - how expensive is this
    - tell me the price
    - what are your prices
- regex: order_id
  examples: |
    - \\bORD-?\\d{5}\\b
- synonym: destination
  examples: |
    - city
"""
# Training settings for the tests: a handful of contrastive steps, enough to move the encoder.
FAST = {"max_steps": 4, "epochs": 1.0, "batch_size": 8}
MODEL_TAG = "test-nlu:v1"
