DATE_FORMAT = "Y年n月j日"  # 2026年12月2日
SHORT_DATETIME_FORMAT = "n月j日 H:i"  # 12月2日 18:40
MONTH_DAY_FORMAT = "n月j日"  # 12月2日 (Django's own is 12月02日 style: m月j日)
YEAR_MONTH_FORMAT = "Y年n月"  # 2026年12月
