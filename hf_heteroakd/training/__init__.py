"""Training: the options (``HeteroAKDConfig`` and the recipe's argument dataclasses), ``HeteroAKDTrainer`` with
its mixins, the teacher-output cache, the preflight check and the Hub upload."""
