"""Tests of the tf.data pipelines: event order over epochs, resume, rank slices, shapes, dtypes."""
import numpy as np
import pytest
import tensorflow as tf

import larcv3_factory as factory
from cosmictagger_tf.data.pipeline import (EventOrder, EventSource, larcv3_dataset,
                                           synthetic_dataset)

NUM_EVENTS = 5


@pytest.fixture(scope="module")
def source_and_sums(tmp_path_factory):
    """An EventSource over two files (3 + 2 events) and each event's total charge."""
    folder = tmp_path_factory.mktemp("pipeline")
    first, first_images, _ = factory.make_valid_file(folder / "a.h5", num_events=3, seed=1)
    second, second_images, _ = factory.make_valid_file(folder / "b.h5", num_events=2, seed=2)
    source = EventSource(f"{first},{second}", "sbndwire", "sbnd_cosmicseg")
    sums = np.concatenate([first_images, second_images]).sum(axis=(1, 2, 3))
    return source, sums


def event_indices(images, sums):
    """Identify each event of a minibatch by its total charge."""
    totals = images.numpy().sum(axis=(1, 2, 3))
    return [int(np.argmin(np.abs(sums - total))) for total in totals]


def read_stream(dataset, sums, minibatches):
    return [index for images, _ in dataset.take(minibatches)
            for index in event_indices(images, sums)]


def test_minibatch_shapes_and_dtypes(source_and_sums):
    source, _ = source_and_sums
    images, labels = next(iter(larcv3_dataset(source, 2, downsample=1, seed=0)))
    assert images.shape == (2, 8, 16, 3)
    assert images.dtype == tf.float32
    assert labels.shape == (2, 8, 16, 3)
    assert labels.dtype == tf.int32


def test_every_epoch_is_a_permutation(source_and_sums):
    source, sums = source_and_sums
    stream = read_stream(larcv3_dataset(source, 2, downsample=0, seed=7), sums, 10)
    epochs = [stream[k:k + NUM_EVENTS] for k in range(0, 4 * NUM_EVENTS, NUM_EVENTS)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(NUM_EVENTS))
    assert len({tuple(epoch) for epoch in epochs}) > 1


def test_stream_follows_event_order(source_and_sums):
    source, sums = source_and_sums
    stream = read_stream(larcv3_dataset(source, 3, downsample=0, seed=11), sums, 4)
    order = EventOrder(NUM_EVENTS, seed=11)
    assert stream == [order.event_at(position) for position in range(12)]


def test_same_seed_same_order(source_and_sums):
    source, sums = source_and_sums
    first = read_stream(larcv3_dataset(source, 2, downsample=0, seed=3), sums, 5)
    second = read_stream(larcv3_dataset(source, 2, downsample=0, seed=3), sums, 5)
    other = read_stream(larcv3_dataset(source, 2, downsample=0, seed=4), sums, 5)
    assert first == second
    assert first != other


def test_unshuffled_order_is_file_order(source_and_sums):
    source, sums = source_and_sums
    stream = read_stream(larcv3_dataset(source, 2, downsample=0, seed=0, shuffle=False),
                         sums, 5)
    assert stream == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]


def test_resume_continues_stream(source_and_sums):
    source, sums = source_and_sums
    full = read_stream(larcv3_dataset(source, 2, downsample=0, seed=5), sums, 6)
    resumed = read_stream(larcv3_dataset(source, 2, downsample=0, seed=5, start_step=4),
                          sums, 2)
    assert resumed == full[8:12]


def test_ranks_split_global_minibatch(source_and_sums):
    source, sums = source_and_sums
    global_stream = read_stream(larcv3_dataset(source, 4, downsample=0, seed=9), sums, 3)
    rank_streams = [read_stream(larcv3_dataset(source, 2, downsample=0, seed=9, rank=rank,
                                               num_ranks=2), sums, 3) for rank in (0, 1)]
    for step in range(3):
        merged = rank_streams[0][2 * step:2 * step + 2] + rank_streams[1][2 * step:2 * step + 2]
        assert merged == global_stream[4 * step:4 * step + 4]


def test_synthetic_minibatch_shape():
    images, labels = next(iter(synthetic_dataset(2, (32, 64), seed=0)))
    assert images.shape == (2, 32, 64, 3)
    assert labels.dtype == tf.int32
    occupancy = float(tf.reduce_mean(tf.cast(images > 0, tf.float32)))
    assert 0.003 < occupancy < 0.03
    assert set(np.unique(labels.numpy())) <= {0, 1, 2}
