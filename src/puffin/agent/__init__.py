"""The Puffin endpoint agent: collects events and delivers them to the server without loss.

It imports `puffin.protocol` and nothing else of Puffin, so `pip install
'puffin-mdr[agent]'` carries no web or database stack.
"""
