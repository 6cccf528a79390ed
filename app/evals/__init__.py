"""Evaluation suite: question sets with gold evidence (`datasets`), evidence recall (`recall`), and the
`longdoc eval ...` commands (`cli.eval_app`)."""

from app.evals.datasets import EvalDocument, EvalQuestion, EvalSet, load_cuad, load_eval_set, load_qmsum

__all__ = ["EvalDocument", "EvalQuestion", "EvalSet", "load_cuad", "load_eval_set", "load_qmsum"]
