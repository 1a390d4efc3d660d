from alexnet_cifar.cli import main
from alexnet_cifar.model import AlexNet
from alexnet_cifar.report.summary import layer_table, model_summary


def test_layer_table_totals_and_shapes():
    rows = {name: (shape, params, macs) for name, shape, params, macs in layer_table(AlexNet())}
    assert list(rows) == ["conv1", "max_pool1", "conv2", "max_pool2", "fc1", "fc2", "fc3"]
    assert rows["conv1"] == ((64, 28, 28), 3 * 64 * 25 + 64, 28 * 28 * 64 * 75)
    assert rows["max_pool2"][0] == (64, 4, 4)
    assert sum(p for _, p, _ in rows.values()) == 576_778
    assert sum(m for _, _, m in rows.values()) == 12_526_464


def test_summary_starts_with_the_lessons_printout(capsys):
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(AlexNet()))
    assert "576,778" in out and "12,526,464" in out
    assert model_summary().splitlines()[-1].split()[-2:] == ["576,778", "12,526,464"]
