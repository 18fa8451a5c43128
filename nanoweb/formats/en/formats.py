DATE_FORMAT = "M j, Y"  # Dec 2, 2026
SHORT_DATETIME_FORMAT = "M j, H:i"  # Dec 2, 18:40: the ledger, batches, gallery
MONTH_DAY_FORMAT = "F j"  # December 2
YEAR_MONTH_FORMAT = "F Y"  # December 2026
