"""Learner: trace consumer, multi-level rewards, Stage-1 policy, DAG generator and Stage-2 graph classifier.

Not implemented yet: no open issue covers it so far.
"""
