"""The two-digit GST state codes (the first two characters of a GSTIN) and their names.

This is the GST Network's list, which keeps two retired codes because old GSTINs and documents
still carry them: 25 (Daman and Diu, merged into 26 in January 2020) and 28 (Andhra Pradesh
before Telangana was carved out; the present state is 37).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

GST_STATES: Final = MappingProxyType(
    {
        "01": "Jammu and Kashmir",
        "02": "Himachal Pradesh",
        "03": "Punjab",
        "04": "Chandigarh",
        "05": "Uttarakhand",
        "06": "Haryana",
        "07": "Delhi",
        "08": "Rajasthan",
        "09": "Uttar Pradesh",
        "10": "Bihar",
        "11": "Sikkim",
        "12": "Arunachal Pradesh",
        "13": "Nagaland",
        "14": "Manipur",
        "15": "Mizoram",
        "16": "Tripura",
        "17": "Meghalaya",
        "18": "Assam",
        "19": "West Bengal",
        "20": "Jharkhand",
        "21": "Odisha",
        "22": "Chhattisgarh",
        "23": "Madhya Pradesh",
        "24": "Gujarat",
        "25": "Daman and Diu",
        "26": "Dadra and Nagar Haveli and Daman and Diu",
        "27": "Maharashtra",
        "28": "Andhra Pradesh (Before Division)",
        "29": "Karnataka",
        "30": "Goa",
        "31": "Lakshadweep",
        "32": "Kerala",
        "33": "Tamil Nadu",
        "34": "Puducherry",
        "35": "Andaman and Nicobar Islands",
        "36": "Telangana",
        "37": "Andhra Pradesh",
        "38": "Ladakh",
        "97": "Other Territory",
        "99": "Centre Jurisdiction",
    }
)


def state_name(code: str | None) -> str | None:
    """The name for a two-digit code ("29" -> "Karnataka"); None for None or an unknown code.

    The code must be exactly as a GSTIN spells it: "7" or " 07" is not looked up, because a
    caller holding such a value has a bug that a guessed match would hide.
    """
    if code is None:
        return None
    return GST_STATES.get(code)
