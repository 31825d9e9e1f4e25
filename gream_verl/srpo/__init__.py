"""SRPO for stock verl 0.9.1: residual-sensitive reward (:mod:`.reward`), bonus-calibrated advantage and
zero-variance group filtering (:mod:`.advantage`), the ``srpo`` reward manager (:mod:`.reward_manager`),
curriculum dataset (:mod:`.curriculum`), registration with verl (:mod:`.register`, loaded by the
``verl.plugins`` entry point) and recipes (:mod:`.recipes`: ``recipes.yaml`` here, launch scripts in ``recipes/srpo``). See recipes/srpo/README.md.
"""
