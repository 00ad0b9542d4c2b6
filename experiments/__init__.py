"""Procedures that serve experiments rather than being methods: calibration (`bench calibrate`) and the regression
check's probes (`bench check`)."""
