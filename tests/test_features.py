"""Profile encoding: tokens, the vectorised table path and the per-dict path agree."""

import numpy as np
import pandas as pd

from recommender.data.features import ProfileEncoder, age_band, profile_tokens


def test_age_bands_and_implausible_ages():
    """Ages map to bands; 0 and 244 (Book-Crossing's data errors) are unknown."""
    assert age_band(24) == "18–24"
    assert age_band(25) == "25–34"
    assert age_band(0) is None and age_band(244) is None and age_band("n/a") is None


def test_location_is_a_hierarchy_and_quotes_are_cleaned():
    """Region and city carry their parents; Book-Crossing's stray quotes are removed."""
    tokens = profile_tokens({"country": ' usa"', "region": "Texas", "city": "Austin"})
    assert tokens == {"country": "usa", "region": "usa/texas", "city": "usa/texas/austin"}
    assert "region" not in profile_tokens({"region": "texas"})


def test_table_path_matches_dict_path():
    """Encoding a users frame (vectorised) gives exactly what encoding its rows as dicts gives."""
    users = pd.DataFrame(
        {
            "user_id": [str(i) for i in range(8)],
            "age": [23, np.nan, 250, 41, 41, 67, 30, 30],
            "gender": ["f", "M ", None, "m", "f", "", "f", "f"],
            "country": ['"germany"', "usa", "usa", None, "usa", "france", "usa", "usa"],
            "region": ["bavaria", "texas", "texas", "texas", "ohio", None, "texas", "texas"],
            "city": ["munich", "austin", "austin", "austin", "", "paris", "austin", "dallas"],
            "customer_type": ["b2b", "b2c", "b2c", None, "b2c", "b2b", "b2c", "b2c"],
        }
    ).set_index("user_id")
    encoder = ProfileEncoder(min_count=1).fit(users)
    records = users.reset_index().to_dict("records")
    assert encoder.tokens_frame(users) == [profile_tokens(r, encoder.extra_columns) for r in records]
    from_table = encoder.transform(users).toarray()
    from_dicts = encoder.transform(records).toarray()
    np.testing.assert_array_equal(from_table, from_dicts)
    assert from_table.sum() > 20
