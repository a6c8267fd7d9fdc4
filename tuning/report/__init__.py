"""Reading a finished experiment and writing its report: pandas and matplotlib, no Ray, no torch."""
