"""Static web assets: the customer page and the agent console (plain HTML/CSS/JS, no build step).

Served by ``signaling``; imports nothing.
"""
