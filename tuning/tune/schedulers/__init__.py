"""Trial schedulers of our own, beside Ray's ASHA: multi-objective ASHA and its promotion variant."""
