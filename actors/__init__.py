"""Pykka actors: proposer, synthesizer, supernode and decision nodes, and the worker that hosts them."""
