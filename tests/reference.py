"""The course's training script, kept faithful (slow on purpose) as the reference.

Only change from the course notes: `mean_squared_error(squared=False)`, gone from
scikit-learn, is `root_mean_squared_error`. Run as a script it prints its metrics as
JSON (used by `make bench`): python tests/reference.py TRAIN.parquet VAL.parquet
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error

CATEGORICAL = ["PUlocationID", "DOlocationID"]


def read_data(path):
    df = pd.read_parquet(path)
    df["duration"] = df.dropOff_datetime - df.pickup_datetime
    df["duration"] = df.duration.dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    df[CATEGORICAL] = df[CATEGORICAL].fillna(-1).astype("int").astype("str")
    return df


def train_model(df, categorical):
    train_dicts = df[categorical].to_dict(orient="records")
    dv = DictVectorizer()
    X_train = dv.fit_transform(train_dicts)
    y_train = df.duration.values
    lr = LinearRegression()
    lr.fit(X_train, y_train)
    train_rmse = root_mean_squared_error(y_train, lr.predict(X_train))
    return lr, dv, train_rmse


def run_model(df, categorical, dv, lr):
    val_dicts = df[categorical].to_dict(orient="records")
    X_val = dv.transform(val_dicts)
    y_pred = lr.predict(X_val)
    return root_mean_squared_error(df.duration.values, y_pred), y_pred


def main(train_path, val_path):
    start = time.perf_counter()
    df_train = read_data(train_path)
    df_val = read_data(val_path)
    lr, dv, train_rmse = train_model(df_train, CATEGORICAL)
    val_rmse, _ = run_model(df_val, CATEGORICAL, dv, lr)
    return {
        "train_rmse": train_rmse,
        "val_rmse": val_rmse,
        "features": len(dv.feature_names_),
        "seconds": time.perf_counter() - start,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
