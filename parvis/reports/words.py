"""The words of the report outputs (HTML, SVG, PDF, CSV, text), in French and English."""

from __future__ import annotations

from parvis.core.reports import NBSP, check_lang

_WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Wi-Fi public{NBSP}: rapport",
        "all_zones": "Tous les secteurs",
        "zone": "Secteur",
        "key_figures": "Chiffres clés",
        "sessions": "Sessions",
        "devices": "Appareils différents (estimation*)",
        "avg_length": "Durée moyenne d’une session",
        "median_length": "Durée médiane d’une session",
        "data_down": "Données reçues par les appareils",
        "data_up": "Données envoyées par les appareils",
        "peak": "Pic d’appareils connectés en même temps",
        "via_code": "Sessions ouvertes avec un code d’accès",
        "change": "Sessions, par rapport à {month}",
        "change_devices": "Appareils, par rapport à {month}",
        "chart_sessions": "Sessions par jour",
        "chart_data": "Données par jour",
        "chart_heatmap": "Sessions commencées, par jour de la semaine et par heure",
        "legend_down": "reçues",
        "legend_up": "envoyées",
        "legend_suppressed": "moins de {min} (masqué)",
        "legend_fewer": "moins",
        "legend_more": "plus",
        "chart_data_table": "Les chiffres du graphique",
        "day": "Jour",
        "hour": "Heure",
        "weekday": "Jour de la semaine",
        "by_zone": "Par secteur",
        "plans": "Forfaits utilisés",
        "plan": "Forfait",
        "codes": "Codes d’accès (par lot)",
        "batch": "Lot de codes",
        "none": "Aucun",
        "method": "Méthode",
        "method_text": (
            "Chaque session compte le jour où elle a commencé (heure locale), une fois "
            "terminée{NBSP}; une session encore en cours compte à sa fin. Les durées et les "
            "volumes de données viennent de la fin de chaque session{NBSP}; la médiane est lue "
            "dans un histogramme à la minute près (à 5{NBSP}minutes près au-delà de "
            "2{NBSP}heures). Le pic est le plus grand nombre d’appareils connectés pendant "
            "une même minute. Tout nombre inférieur à {min} est masqué ({lt}{NBSP}{min}), "
            "ainsi que les moyennes et volumes qui en découlent. Les rapports ne contiennent "
            "ni adresse MAC ni adresse IP."),
        "generated": "Produit le {date} par Parvis.",
        "footer": "Parvis{NBSP}: agrégats seulement, aucune donnée personnelle. Page {page}/{nb}",
        "withheld": "masqué",
    },
    "en": {
        "title": "Public Wi-Fi: report",
        "all_zones": "All areas",
        "zone": "Area",
        "key_figures": "Key figures",
        "sessions": "Sessions",
        "devices": "Different devices (estimate*)",
        "avg_length": "Average session length",
        "median_length": "Median session length",
        "data_down": "Data received by devices",
        "data_up": "Data sent by devices",
        "peak": "Most devices connected at once",
        "via_code": "Sessions opened with an access code",
        "change": "Sessions, compared with {month}",
        "change_devices": "Devices, compared with {month}",
        "chart_sessions": "Sessions per day",
        "chart_data": "Data per day",
        "chart_heatmap": "Sessions started, by day of the week and hour",
        "legend_down": "received",
        "legend_up": "sent",
        "legend_suppressed": "fewer than {min} (withheld)",
        "legend_fewer": "fewer",
        "legend_more": "more",
        "chart_data_table": "The chart's figures",
        "day": "Day",
        "hour": "Hour",
        "weekday": "Day of the week",
        "by_zone": "By area",
        "plans": "Plans used",
        "plan": "Plan",
        "codes": "Access codes (by batch)",
        "batch": "Code batch",
        "none": "None",
        "method": "Method",
        "method_text": (
            "Each session counts on the day it started (local time), once it has ended; a "
            "session still running counts when it ends. Lengths and data come from the end "
            "of each session; the median is read from a histogram to the minute (to 5 "
            "minutes beyond 2 hours). The peak is the most devices connected during one "
            "minute. Any number below {min} is withheld ({lt}{NBSP}{min}), and so are the "
            "averages and volumes drawn from it. Reports hold no MAC or IP address."),
        "generated": "Produced on {date} by Parvis.",
        "footer": "Parvis: aggregates only, no personal data. Page {page}/{nb}",
        "withheld": "withheld",
    },
}


def word(lang: str, name: str, **values: object) -> str:
    """The text called ``name`` in ``lang``, with ``{…}`` filled from ``values``."""
    return _WORDS[check_lang(lang)][name].format(NBSP=NBSP, lt="<", **values)
